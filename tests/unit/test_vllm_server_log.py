"""A vLLM server that fails shows its root cause: the engine process logs the exception (out of memory, say)
long before the API server's traceback fills the log's tail, so the error lines above the tail come first."""

from loop.config import VLLMConfig
from loop.model.vllm.server import VLLMServer


def server(tmp_path):
    return VLLMServer(VLLMConfig(), tmp_path, lora=False, max_model_len=64, device="cpu")


def test_the_engines_error_above_the_tail_is_shown_before_it(tmp_path):
    s = server(tmp_path)
    cause = "(EngineCore pid=7) ValueError: Free memory on device (3.1/139.8 GiB) is less than desired"
    lines = ["(APIServer pid=6) INFO starting", cause] + [f"(APIServer pid=6)   File x.py, line {i}" for i in range(50)]
    lines.append("(APIServer pid=6) RuntimeError: Engine core initialization failed.")
    s.workdir.mkdir(parents=True, exist_ok=True)
    s.log_path.write_text("\n".join(lines))
    shown = s.log_tail(lines=10).splitlines()
    assert shown[1] == cause and shown[-1] == lines[-1]
    assert len(shown) == 1 + 1 + 1 + 10  # the heading, the cause, the tail's heading, the tail
    assert "INFO starting" not in "\n".join(shown)


def test_a_log_without_errors_above_the_tail_is_its_tail_alone(tmp_path):
    s = server(tmp_path)
    s.workdir.mkdir(parents=True, exist_ok=True)
    s.log_path.write_text("\n".join(f"line {i}" for i in range(30)))
    assert s.log_tail(lines=5).splitlines() == [f"line {i}" for i in range(25, 30)]
    assert server(tmp_path / "none").log_tail() == "(no log)"
