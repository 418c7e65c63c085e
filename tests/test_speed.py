"""Speed switches: activation checkpointing of stage 3 changes neither the parameter names (checkpoints) nor
the gradients, only when activations are computed."""

from __future__ import annotations

import hydra
import torch

from dawn_lightning.tensors.draws import SampleDraws
from tests.test_audio_to_motion import motion_ckpt, stage3_config  # noqa: F401 (a fixture)


def test_stage3_activation_checkpointing_gives_the_same_gradients(synthetic, motion_ckpt, tmp_path):  # noqa: F811
    results = {}
    for on in (False, True):
        cfg = stage3_config(
            "stage3a", synthetic.root, motion_ckpt, tmp_path, [f"model.activation_checkpointing={on}"]
        )
        torch.manual_seed(0)
        module = hydra.utils.instantiate(cfg.model)
        datamodule = hydra.utils.instantiate(cfg.datamodule)
        datamodule.setup("fit")
        batch = next(iter(datamodule.val_dataloader()))
        draws = SampleDraws(torch.arange(len(batch["video"])))
        loss = module.losses(module.inputs(batch), 0.1, draws)["loss"]
        loss.backward()
        results[on] = (
            module.state_dict().keys(),
            {n: p.grad for n, p in module.net.named_parameters()},
            module,
        )
    assert results[True][0] == results[False][0]  # checkpoints are interchangeable
    wrapped = [m for m in results[True][2].net.modules() if type(m).__name__ == "CheckpointWrapper"]
    assert wrapped and not any(
        type(m).__name__ == "CheckpointWrapper" for m in results[False][2].net.modules()
    )
    plain = {n.replace("_checkpoint_wrapped_module.", ""): g for n, g in results[True][1].items()}
    assert plain.keys() == results[False][1].keys()
    for name, grad in results[False][1].items():
        if grad is not None:
            torch.testing.assert_close(plain[name], grad, rtol=1e-4, atol=1e-6, msg=name)


def test_compiled_stage_trains_and_keeps_its_checkpoint_names(synthetic, tmp_path):
    from dawn_lightning.training.run import train
    from tests.test_ema import stage2_config

    cfg = stage2_config(synthetic.root, tmp_path, ["compile={backend:eager}"])  # EMA on, as stage 2 has it
    _, trainer = train(cfg)
    assert trainer.global_step == 4 and trainer.lightning_module.net._compiled_call_impl is not None
    checkpoint = torch.load(tmp_path / "checkpoints" / "last.ckpt", weights_only=True)
    for key in ("state_dict", "current_model_state"):
        assert checkpoint[key].keys() == trainer.lightning_module.state_dict().keys()
        assert not any("_orig_mod" in k for k in checkpoint[key])
