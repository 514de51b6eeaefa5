"""The AOT tool compiles the trainer's program for a TPU slice it does not have (libtpu, compile-only
devices) and for this host's CPUs, and reads memory, loops, collectives and FLOPs from the result."""

import json

import jax
import pytest

from configs import demo
from lingshu_jax.aot import hlo
from lingshu_jax.aot.report import fit_report, format_report
from lingshu_jax.aot.targets import parse_target


def _demo():
    c = demo.get_config("stage=2,steps=1")
    c.init_from = ""
    c.train.grad_accum = 2
    return c


def test_tiny_config_compiles_for_a_v5p_2x2x1_slice_and_reports_what_it_needs():
    """Needs libtpu (setup.py extra [tpu]); without it this fails with the install command, it never skips."""
    c = _demo()
    r = fit_report(c, parse_target("v5p:2x2x1"))
    json.dumps(r)
    assert r["target"]["devices"] == 4 and r["fits"] and r["mesh"]["fsdp"] == 4
    mem = r["memory"]
    assert mem["hbm_per_device"] == 95 * 2**30 and 0 < mem["total"] < mem["hbm_per_device"]
    n_params = sum(x.size for x in jax.tree.leaves(jax.eval_shape(lambda: _params(c))))
    assert mem["params"] == pytest.approx(
        4 * n_params / 4, rel=0.05
    )  # fp32, sharded 4 ways (small ones replicate)
    assert mem["optimizer_state"] == pytest.approx(2 * mem["params"], rel=0.05)  # Adam mu, nu
    # the decoder-layer scan (2 layers) runs inside the accumulation scan (2 micro-batches)
    assert 2 in r["loops"]["trip_counts"] and "unknown" not in r["loops"]
    assert r["collectives"]["all-gather"]["bytes"] > 0  # fsdp gathers the weights
    assert (
        r["flops"]["analytic"] > 0
        and r["flops"]["hlo_weighted_per_device"] > r["flops"]["hlo_once_per_device"]
    )
    assert r["step"]["estimate_s"] > 0 and 0 < r["step"]["mfu"] < 1
    text = format_report(r)
    assert "FITS" in text and "all-gather" in text and "assumptions" in text


def test_splash_attention_compiles_for_tpu_as_pallas_kernels_timed_analytically():
    """attention_impl="splash": Mosaic kernels in shard_map compile for the TPU slice; the report counts them
    (custom calls) and times them by the FLOPs they execute."""
    c = _demo()
    c.model.attention_impl = "splash"
    c.data.batch_size, c.data.patch_budget, c.data.vision_chunks = 4, 4 * 256, 4
    r = fit_report(c, parse_target("v5p:2x2x1"))
    assert r["fits"] and r["custom_calls"].get("tpu_custom_call", 0) > 0
    assert r["flops"]["kernels_executed_per_device"] > 0
    assert any("splash attention" in a for a in r["assumptions"])


def test_two_slices_compile_with_data_parallelism_over_dcn():
    """--num_slices=2: mesh.dcn.data=2 joins two v5p:2x2x1 slices; the gradient reduction across slices is
    counted as DCN traffic (collectives name devices by partition id, mapped to their slices)."""
    c = _demo()
    c.data.batch_size = 8
    r = fit_report(c, parse_target("v5p:2x2x1", num_slices=2))
    assert r["target"]["devices"] == 8 and r["mesh"]["data"] == 2 and r["fits"]
    assert r["step"]["dcn_wire_bytes"] > 0 and r["step"]["ici_wire_bytes"] > 0


def test_cpu_target_reports_memory_of_the_same_program():
    r = fit_report(_demo(), parse_target("cpu"))
    assert r["target"]["devices"] == jax.device_count() and r["memory"]["temporaries"] > 0
    assert "step" not in r and r["flops"]["analytic"] > 0


def _params(c):
    from lingshu_jax.model.config import ModelConfig
    from lingshu_jax.model.vlm import init_params

    return init_params(ModelConfig.from_config_dict(c.model), jax.random.key(0))


@pytest.mark.parametrize(
    "spec, shape, cloud",
    [
        ("v5p-16", (2, 2, 2), "v5p-16"),
        ("v5p:2x2x2", (2, 2, 2), "v5p-16"),
        ("v5p-128", (4, 4, 4), "v5p-128"),
        ("v5p-64", (2, 4, 4), "v5p-64"),
        ("v6e-16", (4, 4), "v6e-16"),
        ("v6e:8x8", (8, 8), "v6e-64"),
        ("v5litepod-8", (2, 4), "v5litepod-8"),
        ("v4-8", (2, 2, 1), "v4-8"),
    ],
)
def test_cloud_tpu_names_give_cloud_slice_shapes(spec, shape, cloud):
    t = parse_target(spec)
    assert (t.shape, t.cloud_name) == (shape, cloud)


def test_bad_topologies_name_the_problem():
    with pytest.raises(ValueError, match="v5p-N counts TensorCores"):
        parse_target("v5p-9")
    with pytest.raises(ValueError, match="expected cpu, gpu or a TPU slice"):
        parse_target("tpu9")
    with pytest.raises(ValueError, match="only TPU targets have slices"):
        parse_target("cpu", num_slices=2)


def test_hlo_reader_weights_loop_bodies_by_their_trip_counts():
    def f(w, x):
        def body(c, _):
            return c @ w, None

        return jax.lax.scan(body, x, None, length=7)[0]

    text = jax.jit(f).lower(
        jax.ShapeDtypeStruct((64, 64), "float32"), jax.ShapeDtypeStruct((8, 64), "float32")
    )
    m = hlo.parse(text.compile().as_text())
    assert sorted(m.trip_counts.values()) == [7]
    flops = sum(
        mult * hlo.matmul_flops(i, hlo.shape_table(m.computations[c])) for c, mult, i in m.instructions()
    )
    assert flops == 7 * 2 * 8 * 64 * 64


WINDOWED_LOOP = """HloModule m, entry_computation_layout={()->u32[]}

%cond (p: (u32[], f32[4])) -> pred[] {
  %p = (u32[], f32[4]) parameter(0)
  %i = u32[] get-tuple-element(%p), index=0
  %limit = u32[] constant(4)
  ROOT %lt = pred[] compare(%i, %limit), direction=LT
}

%body (q: (u32[], f32[4])) -> (u32[], f32[4]) {
  %q = (u32[], f32[4]) parameter(0)
  %i = u32[] get-tuple-element(%q), index=0
  %x = f32[4] get-tuple-element(%q), index=1
  %two = u32[] constant(2)
  %next = u32[] add(%i, %two)
  %y = f32[4] add(%x, %x)
  ROOT %t = (u32[], f32[4]) tuple(%next, %y)
}

ENTRY %main () -> u32[] {
  %zero = u32[] constant(0)
  %init = f32[4] constant({1, 2, 3, 4})
  %start = (u32[], f32[4]) tuple(%zero, %init)
  %w = (u32[], f32[4]) while(%start), condition=%cond, body=%body
  ROOT %out = u32[] get-tuple-element(%w), index=0
}
"""


def test_hlo_reader_counts_loops_whose_counter_steps_by_two():
    """XLA's windowed einsums (collective matmuls) run `i = 0, 2, ..` while i < 4: two trips, not four."""
    m = hlo.parse(WINDOWED_LOOP)
    assert list(m.trip_counts.values()) == [2]


IN_PLACE = """HloModule m, entry_computation_layout={()->f32[64,1024]}

%fused (p0: f32[64,1024], p1: f32[1,1024], p2: s32[]) -> f32[64,1024] {
  %p0 = f32[64,1024] parameter(0)
  %p1 = f32[1,1024] parameter(1)
  %p2 = s32[] parameter(2)
  %z = s32[] constant(0)
  ROOT %d = f32[64,1024] dynamic-update-slice(%p0, %p1, %p2, %z)
}

ENTRY %main () -> f32[64,1024] {
  %buf = f32[64,1024] constant(0)
  %row = f32[1,1024] constant(1)
  %i = s32[] constant(3)
  ROOT %f = f32[64,1024] fusion(%buf, %row, %i), kind=kLoop, calls=%fused
}
"""


def test_in_place_update_moves_only_its_update():
    """A scan saving one layer's residual into the stacked buffer writes a row, not the whole buffer twice."""
    m = hlo.parse(IN_PLACE)
    entry = m.computations[m.entry]
    fusion = entry[-1]
    shapes = hlo.shape_table(entry)
    counted = sum(hlo.array_bytes(fusion.shape)) + sum(
        b for op in fusion.operands for b in hlo.array_bytes(shapes[op])
    )
    moved = counted - hlo.in_place_bytes(fusion, m, shapes)
    assert moved == 2 * 1024 * 4 + 4  # the row read and written, and the index


SLICED_READ = """HloModule m, entry_computation_layout={()->f32[1,1024]}

%fused (p0: f32[64,1024], p1: s32[]) -> f32[1,1024] {
  %p0 = f32[64,1024] parameter(0)
  %p1 = s32[] parameter(1)
  %z = s32[] constant(0)
  %row = f32[1,1024] dynamic-slice(%p0, %p1, %z), dynamic_slice_sizes={1,1024}
  ROOT %twice = f32[1,1024] add(%row, %row)
}

ENTRY %main () -> f32[1,1024] {
  %stack = f32[64,1024] constant(0)
  %i = s32[] constant(3)
  ROOT %f = f32[1,1024] fusion(%stack, %i), kind=kLoop, calls=%fused
}
"""


def test_a_fusion_reading_one_layer_of_a_stack_moves_that_layer_only():
    """A scan body slicing its layer's weights out of the stacked [L, ...] parameters reads one layer."""
    m = hlo.parse(SLICED_READ)
    entry = m.computations[m.entry]
    moved = hlo.hbm_bytes(entry[-1], m, hlo.shape_table(entry))
    assert moved == 1024 * 4 + 4 + 1024 * 4  # the row read, the index, the result written
