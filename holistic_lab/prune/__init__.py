"""Chapter 07: structured channel pruning of the opened Holistic models, recovered by distillation.

    graph = channel_graph(model)                    # dependency groups: channels pruned together
    scores = importance(graph, "l1")                # or "l2", or "taylor" with real crops
    plan = plan_pruning(graph, scores, 0.3)         # widths rounded to XNNPACK's tile of 16
    small = prune_model(graph, plan.keep)           # a smaller Keras model, weights sliced
    prune_variant("variants/pose_pruned30", "pose_landmark", 0.3, recover_epochs=2)

One idea per file, in the order the data flows: `groups` (which channels are tied, from the
model's config), `scoring` (importance: L1/L2 magnitude, first-order Taylor), `plan` (sparsity -> kept
slots, rounded widths), `rebuild` (the smaller model with sliced weights), `cost` (MACs, and
per-layer latency measured in the TFLite interpreter), `recover` (distillation from the
unpruned model on real crops), `variant` (schedule + variant folder, `holistic-lab prune`).

Importing this package does not load TensorFlow; the names load on first use.
"""
_LAZY = {"ChannelGraph": "groups", "ChannelGroup": "groups", "channel_graph": "groups",
         "CRITERIA": "scoring", "importance": "scoring", "magnitude": "scoring", "taylor": "scoring",
         "PrunePlan": "plan", "plan_pruning": "plan", "rounded_width": "plan",
         "kept_channels": "rebuild", "prune_model": "rebuild",
         "LayerLatency": "cost", "layer_latency": "cost", "layer_macs": "cost", "model_latency": "cost",
         "model_macs": "cost", "one_layer_tflite": "cost", "width_sweep": "cost",
         "DistillRun": "recover", "distill": "recover", "distillation_loss": "recover", "recovery_crops": "recover",
         "PruneResult": "variant", "prune_stage": "variant", "prune_variant": "variant"}


def __getattr__(name):
    if name in _LAZY:
        import importlib

        from ..native_logs import import_tensorflow

        import_tensorflow()  # first, so TensorFlow's native start-up lines are filtered (see native_logs)
        return getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = list(_LAZY)
