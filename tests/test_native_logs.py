"""Native stderr filtering: benign library chatter dropped, everything else kept."""
import os

from holistic_lab.native_logs import filtered_native_stderr, is_benign


def test_benign_lines_are_dropped_and_real_errors_kept(capfd):
    with filtered_native_stderr():
        os.write(2, b"INFO: Created TensorFlow Lite XNNPACK delegate for CPU.\n")
        os.write(2, b"WARNING: All log messages before absl::InitializeLog() is called are written to STDERR\n")
        os.write(2, b"E0000 00:00:1.0 123 cuda_dnn.cc:8579] Unable to register cuDNN factory: Attempting to register factory for plugin cuDNN when one has already been registered\n")
        os.write(2, b"F0000 00:00:1.0 123 graph.cc:1] Check failed: model file missing\n")
    err = capfd.readouterr().err
    assert err == "F0000 00:00:1.0 123 graph.cc:1] Check failed: model file missing\n"


def test_is_benign_is_specific():
    assert is_benign("libpng warning: iCCP: known incorrect sRGB profile\n")
    assert not is_benign("libpng error: IDAT: CRC error")
    assert not is_benign("E0000 00:00:1.0 1 interpreter.cc:1] Failed to allocate tensors")


def test_distributed_and_ray_start_up_lines_are_benign_but_their_failures_are_not():
    assert is_benign("I0000 00:00:17.2 21652 grpc_server_lib.cc:463] Started server with target: grpc://127.0.0.1:35879")
    assert is_benign("I0000 00:00:17.2 21650 coordination_service_agent.cc:369] Coordination agent has successfully "
                     "connected.")
    assert is_benign("[2026-11-23 11:29:28,716 E 21480 21480] core_worker.cc:2465: Actor with class name: 'MapWorker("
                     "MapBatches(_UnitLabeller))' and ID: 'ceb1' has constructor arguments in the object store and "
                     "max_restarts > 0. If the arguments in the object store go out of scope or are lost, ...")
    assert not is_benign("E0000 00:00:17.2 1 coordination_service_agent.cc:1] Failed to connect to coordination service")
    assert not is_benign("[2026-11-23 11:29:28,716 E 1 1] core_worker.cc:1: Actor died unexpectedly")
