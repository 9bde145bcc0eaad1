"""bench/gpu_levers.py sorts a profile's kernels by what their names say they do, per step."""

from types import SimpleNamespace

import pytest

gpu_levers = pytest.importorskip("bench.gpu_levers")


def kernel(name, us):
    return SimpleNamespace(key=name, self_device_time_total=us)


def test_kernels_are_summed_by_kind_per_step():
    events = [kernel("nvjet_sm90_tst_192x192_64x3_1x2_h_bz_coopB_NTN", 4000),
              kernel("sm90_xmma_gemm_bf16bf16_bf16f32", 2000),
              kernel("cudnn_generated_fort_native_sdpa_sm90_flash_fprop", 3000),
              kernel("void at::native::(anonymous namespace)::multi_tensor_apply_kernel<at::", 1000),
              kernel("triton_poi_fused__unsafe_view_mul_silu_12", 600),
              kernel("void at::native::vectorized_elementwise_kernel<4, at::native::BinaryFu", 400),
              kernel("something_unheard_of", 200)]
    kinds = gpu_levers.kernel_kinds(events, steps=2)
    assert kinds == {"matmul": 3.0, "attention": 1.5, "optimizer": 0.5, "fused_triton": 0.3, "elementwise": 0.2,
                     "other": 0.1}
    assert list(kinds) == sorted(kinds, key=kinds.get, reverse=True)


def test_training_mfu_counts_six_flops_per_parameter_and_token_over_the_peak():
    # 6 x 5e8 params x 1e5 tokens/s = 3e14 FLOP/s: 30% of a 1e15 peak, and of the datasheet's 989 TFLOP/s by default.
    assert gpu_levers.train_mfu(5 * 10**8, 1e5, peak_flops=1e15) == pytest.approx(0.3)
    assert gpu_levers.train_mfu(5 * 10**8, 1e5) == pytest.approx(3e14 / 989e12)


def test_the_kernel_bound_mfu_counts_the_steps_work_over_its_kernels_time():
    # 6 x 1e9 params x 1e4 tokens = 6e13 FLOPs a step; 100 ms of kernels -> 6e14 FLOP/s, 60% of a 1e15 peak.
    assert gpu_levers.kernel_bound_mfu(10**9, 1e4, 100.0, peak_flops=1e15) == pytest.approx(0.6)
    # Half the kernel time, twice the bound; the datasheet peak is the default.
    assert gpu_levers.kernel_bound_mfu(10**9, 1e4, 50.0, peak_flops=1e15) == pytest.approx(1.2)
    assert gpu_levers.kernel_bound_mfu(10**9, 1e4, 100.0) == pytest.approx(6e14 / 989e12)
    with pytest.raises(ValueError, match="kernel_ms_per_step"):
        gpu_levers.kernel_bound_mfu(10**9, 1e4, 0.0)
