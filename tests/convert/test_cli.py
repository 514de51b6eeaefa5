"""scripts/convert.py: both directions end to end, exit code 2 with the error on bad input."""

import importlib.util
import os

from tests.convert.helpers import assert_bit_exact, read_all

_SPEC = importlib.util.spec_from_file_location(
    "convert_cli", os.path.join(os.path.dirname(__file__), "..", "..", "scripts", "convert.py")
)
convert_cli = importlib.util.module_from_spec(_SPEC)
_SPEC.loader.exec_module(convert_cli)


def test_cli_round_trip_reports_throughput(hf_checkpoint, tmp_path, capsys):
    hf_dir, _ = hf_checkpoint("tiny")
    assert convert_cli.main(["hf-to-jax", "--hf_dir", hf_dir, "--out", str(tmp_path / "jax")]) == 0
    assert (
        convert_cli.main(
            [
                "jax-to-hf",
                "--checkpoint",
                str(tmp_path / "jax"),
                "--out",
                str(tmp_path / "hf"),
                "--source_hf_dir",
                hf_dir,
            ]
        )
        == 0
    )
    out = capsys.readouterr().out
    assert "hf-to-jax:" in out and "jax-to-hf:" in out and "MB/s" in out
    assert_bit_exact(read_all(hf_dir), read_all(str(tmp_path / "hf")))


def test_cli_error_exits_2_with_message(tmp_path, capsys):
    assert convert_cli.main(["hf-to-jax", "--hf_dir", str(tmp_path), "--out", str(tmp_path / "o")]) == 2
    assert "error:" in capsys.readouterr().err
