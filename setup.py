"""lingshu-jax: Lingshu / Qwen2.5-VL medical VLM training and evaluation in JAX/Flax."""

from setuptools import find_packages, setup

# Versions pinned to what the test-suite was run against (see README "Environment").
INSTALL_REQUIRES = [
    "jax==0.10.2",
    "jaxlib==0.10.2",
    "flax==0.12.8",
    "optax==0.2.8",
    "orbax-checkpoint==0.12.8",
    "grain==0.2.18",
    "transformers==5.24.0",
    "tensorflow-datasets==4.9.10",
    "ml-collections",
    "pyyaml",  # data.sources_file=mix.yaml
    "safetensors",
    "tokenizers",
    "numpy",
    "pillow",
    "pydicom",
    "psutil",
    "tqdm",
    "tensorboardX",
    "matplotlib",
    "absl-py",
    "jinja2>=3.1.6",
    "nltk==3.10.4",
    "rouge==1.0.1",
    "pycocoevalcap==1.2",
    "array-record",
    "pyarrow==26.0.1",  # data: Parquet, Arrow and datasets.save_to_disk sources (data/columnar.py)
    "av==18.1.0",  # data: video files (mp4, webm, avi, mov, mkv...) read with PyAV (processing/video.py)
    "numba==0.68.1",  # processing/resize.py: PIL's bicubic resize, bit for bit, compiled (2x faster)
]

EXTRAS = {
    # Offline data for the embedded demo: easy-vqa ships 5,000 PNGs + questions; dashscope ships
    # Qwen's BPE ranks (qwen.tiktoken) from which we derive a Qwen2-compatible tokenizer offline.
    "demo": ["easy-vqa==1.0", "dashscope==2.0.2"],
    # Compile-only TPU backend for scripts/aot.py (fit reports for TPU slices without a TPU): the libtpu
    # that jax 0.10.2 is built against.
    "tpu": ["libtpu==0.0.42.1"],
    # torch is pinned: 2.13.0 resolves to a CPU wheel on local disk; any other spec downloads GBs.
    "test": ["torch==2.13.0", "pytest", "pytest-xdist", "easy-vqa==1.0", "dashscope==2.0.2", "ruff==0.17.6"],
}

setup(
    name="lingshu-jax",
    version="0.1.0",
    description="Lingshu / Qwen2.5-VL in JAX/Flax: parity with transformers, sharded training, GRPO, medical evals",
    packages=find_packages(include=["lingshu_jax", "lingshu_jax.*"]),
    package_data={"lingshu_jax": ["assets/*"]},
    python_requires=">=3.10",
    install_requires=INSTALL_REQUIRES,
    extras_require=EXTRAS,
)
