"""How the student's weights are sharded over data-parallel ranks: DeepSpeed ZeRO (the default) or FSDP2.

Both answer the training loop the same way: `loss_sum` of one pack (declaring whether it is the step's last
micro-batch, where gradients are reduced), `backward` a scaled loss, `step` at a learning rate, `save`/`load` this
rank's share of a checkpoint directory, and `full_state_dict` for the export (on rank 0; every rank must call it).
Both average gradients over ranks, which `pipeline.train_loss.backward_scale` accounts for. Imports are lazy: this
runs inside Ray Train workers only.
"""

from __future__ import annotations

import copy
from typing import Any

from pipeline.config import DeepSpeedStrategyConfig, TrainConfig
from pipeline.flops import FlopsModel
from pipeline.train_loss import LossHead


def build_strategy(config: TrainConfig, model_path: str, device: Any) -> "DeepSpeedStrategy | FSDPStrategy":
    if isinstance(config.strategy, DeepSpeedStrategyConfig):
        return DeepSpeedStrategy(config, model_path)
    return FSDPStrategy(config, model_path, device)


def load_model(config: TrainConfig, model_path: str, dtype: Any) -> Any:
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(
        model_path, dtype=dtype, attn_implementation=config.attn_implementation
    )
    model.config.use_cache = False  # packed samples stay isolated only without the cache (ENVIRONMENT.md)
    if config.gradient_checkpointing:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    return model


def flops_model(model: Any) -> FlopsModel:
    """Counted before sharding; under ZeRO-3's partitioned loading a parameter's full size is its `ds_numel`."""
    def size(p: Any) -> int:
        return getattr(p, "ds_numel", p.numel())

    total = sum(size(p) for p in model.parameters())
    return FlopsModel.from_hf_config(model.config, total, size(model.get_input_embeddings().weight))


def deepspeed_config(config: TrainConfig) -> dict[str, Any]:
    strategy, optimizer = config.strategy, config.optimizer
    zero: dict[str, Any] = {"stage": strategy.zero_stage}
    if strategy.offload_optimizer:
        zero["offload_optimizer"] = {"device": "cpu"}
    if strategy.offload_params:
        zero["offload_param"] = {"device": "cpu"}
    generated = {
        # One pack per micro-batch, and DeepSpeed's own accumulation count stays at 1: a step's number of micro-batches
        # varies with packing, so the loop marks the accumulation boundary itself and normalizes the loss itself.
        "train_micro_batch_size_per_gpu": 1,
        "gradient_accumulation_steps": 1,
        "gradient_clipping": optimizer.max_grad_norm or 0.0,
        "bf16": {"enabled": config.precision == "bf16"},
        "zero_optimization": zero,
        "optimizer": {
            "type": "AdamW",
            "params": {
                "lr": optimizer.lr, "betas": list(optimizer.betas), "eps": optimizer.eps,
                "weight_decay": optimizer.weight_decay,
                # torch's AdamW needs no JIT-built op (DeepSpeed's fused Adam does); offloading needs its CPU Adam.
                "torch_adam": not strategy.offload_optimizer,
            },
        },
        "steps_per_print": 2**31 - 1,
    }
    return _merged(generated, strategy.config_overrides)


def _merged(base: dict[str, Any], overrides: dict[str, Any]) -> dict[str, Any]:
    merged = copy.deepcopy(base)
    for key, value in overrides.items():
        nested = isinstance(value, dict) and isinstance(merged.get(key), dict)
        merged[key] = _merged(merged[key], value) if nested else value
    return merged


class DeepSpeedStrategy:
    def __init__(self, config: TrainConfig, model_path: str):
        import deepspeed
        import torch
        from transformers.integrations import HfDeepSpeedConfig

        deepspeed.init_distributed()  # adopts the process group Ray Train set up (gloo on CPU, nccl on GPU)
        ds_config = deepspeed_config(config)
        self._zero3 = config.strategy.zero_stage == 3
        # Kept alive so that from_pretrained builds the model already partitioned (zero.Init): no rank ever holds
        # all the weights of a ZeRO-3 model.
        self._hf_ds_config = HfDeepSpeedConfig(ds_config) if self._zero3 else None
        model = load_model(config, model_path, torch.bfloat16 if config.precision == "bf16" else torch.float32)
        self.flops_model = flops_model(model)
        self.loss_head = LossHead(model, config.loss_chunk_tokens)
        self.engine, *_ = deepspeed.initialize(
            model=model, model_parameters=[p for p in model.parameters() if p.requires_grad], config=ds_config
        )
        self.module = self.engine.module

    def loss_sum(self, input_ids: Any, position_ids: Any, labels: Any, last: bool) -> Any:
        self.engine.set_gradient_accumulation_boundary(last)
        return self.loss_head.loss_sum(self.engine, labels, input_ids=input_ids, position_ids=position_ids)

    def backward(self, loss: Any) -> None:
        self.engine.backward(loss, scale_wrt_gas=False)

    def step(self, lr: float) -> float:
        for group in self.engine.optimizer.param_groups:
            group["lr"] = lr
        self.engine.step()
        return float(self.engine.get_global_grad_norm() or 0.0)

    def save(self, directory: str) -> None:
        self.engine.save_checkpoint(directory, tag="state", save_latest=False)

    def load(self, directory: str) -> None:
        path, _ = self.engine.load_checkpoint(directory, tag="state", load_lr_scheduler_states=False)
        if path is None:
            raise RuntimeError(f"no DeepSpeed checkpoint in {directory}")

    def full_state_dict(self) -> dict[str, Any] | None:
        if self._zero3:
            return self.engine._zero3_consolidated_16bit_state_dict()  # gathered layer by layer onto rank 0's CPU
        return {k: v.cpu() for k, v in self.module.state_dict().items()} if self.engine.global_rank == 0 else None


class FSDPStrategy:
    def __init__(self, config: TrainConfig, model_path: str, device: Any):
        import torch
        from torch.distributed.fsdp import CPUOffloadPolicy, MixedPrecisionPolicy, OffloadPolicy, fully_shard

        # FSDP keeps fp32 master weights in the shards and computes in bf16; the full model is loaded on every rank
        # first (fine up to a few billion parameters; ZeRO-3's partitioned loading is the path for larger ones).
        model = load_model(config, model_path, torch.float32)
        self.flops_model = flops_model(model)
        self.loss_head = LossHead(model, config.loss_chunk_tokens)
        bf16 = config.precision == "bf16"
        shard = {
            "mp_policy": MixedPrecisionPolicy(param_dtype=torch.bfloat16 if bf16 else None, reduce_dtype=torch.float32),
            "reshard_after_forward": config.strategy.reshard_after_forward,
            "offload_policy": CPUOffloadPolicy() if config.strategy.cpu_offload else OffloadPolicy(),
        }
        if not config.strategy.cpu_offload:
            model.to(device)
        layer_classes = set(model._no_split_modules or [])
        for module in model.modules():
            if type(module).__name__ in layer_classes:
                fully_shard(module, **shard)
        self.module = fully_shard(model, **shard)
        opt = config.optimizer
        self.optimizer = torch.optim.AdamW(
            model.parameters(), lr=opt.lr, betas=opt.betas, eps=opt.eps, weight_decay=opt.weight_decay
        )
        self._max_grad_norm = opt.max_grad_norm

    def loss_sum(self, input_ids: Any, position_ids: Any, labels: Any, last: bool) -> Any:
        self.module.set_requires_gradient_sync(last)  # accumulate locally; reduce-scatter once, after the last pack
        return self.loss_head.loss_sum(self.module, labels, input_ids=input_ids, position_ids=position_ids)

    def backward(self, loss: Any) -> None:
        loss.backward()

    def step(self, lr: float) -> float:
        import torch

        parameters = list(self.module.parameters())
        norm = torch.nn.utils.clip_grad_norm_(parameters, self._max_grad_norm or float("inf"))
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        return float(norm.full_tensor() if hasattr(norm, "full_tensor") else norm)

    def _state(self) -> dict[str, Any]:
        from torch.distributed.checkpoint.state_dict import get_state_dict

        model, optimizer = get_state_dict(self.module, self.optimizer)
        return {"model": model, "optimizer": optimizer}

    def save(self, directory: str) -> None:
        import torch.distributed.checkpoint as dcp

        dcp.save(self._state(), checkpoint_id=directory)

    def load(self, directory: str) -> None:
        import torch.distributed.checkpoint as dcp
        from torch.distributed.checkpoint.state_dict import set_state_dict

        state = self._state()
        dcp.load(state, checkpoint_id=directory)
        set_state_dict(
            self.module, self.optimizer, model_state_dict=state["model"], optim_state_dict=state["optimizer"]
        )

    def full_state_dict(self) -> dict[str, Any] | None:
        import torch.distributed as dist
        from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

        state = get_model_state_dict(self.module, options=StateDictOptions(full_state_dict=True, cpu_offload=True))
        return state if dist.get_rank() == 0 else None
