"""The role-blind GRPO learner: token ids, a response mask and one advantage per sequence in; one
optimizer step out (paper §3.4, Eq. 10-12; spec Part A 'loss').

Sequences are grouped into micro-batches by a token budget (length-sorted, so padding stays small; or
packed into rows without padding when `packing` is on, see `spell.engine.learner.packing`). The token-mean
loss is normalised by the response tokens of the *whole* batch so gradient accumulation equals one
big batch, then AdamW takes a single clipped step. A non-finite loss or gradient skips the step and
leaves the weights untouched.
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch

from spell.engine.learner.chunked_head import logprob_head
from spell.engine.learner.layouts import PACKED, PADDED, SHARED, micro_batches, padded_batch, row_batch
from spell.engine.learner.shared_prefix import device_mask, row_blocks
from spell.loss import LossStats, policy_loss, token_logprobs


@dataclass
class TrainSequence:
    """One trajectory as the learner sees it: no role, no task, just tokens and an advantage."""

    prompt_ids: list[int]
    response_ids: list[int]
    advantage: float
    old_logprobs: list[float] | None = None

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TrainSequence:
        return cls(
            prompt_ids=[int(t) for t in d["prompt_ids"]],
            response_ids=[int(t) for t in d["response_ids"]],
            advantage=float(d["advantage"]),
            old_logprobs=None if d.get("old_logprobs") is None else [float(x) for x in d["old_logprobs"]],
        )


@dataclass(frozen=True)
class LearnerSettings:
    lr: float = 2e-6
    weight_decay: float = 0.01
    betas: tuple[float, float] = (0.9, 0.999)
    grad_clip: float = 1.0
    clip_low: float = 0.2
    clip_high: float = 0.2
    kl_coef: float = 0.0
    token_budget: int = 8192
    packing: bool = False
    sequence_parallel: int = 1  # ranks sharing each sequence (Ulysses, see spell.engine.learner.ulysses)
    temperature: float = 1.0  # the rollout temperature: log-probs are those of softmax(logits / T)
    # the answers of one prompt over one copy of it (spell.engine.learner.shared_prefix); engine.shared_prefix's
    # default, so a Policy built in code (a bench, a user's script) takes the layout a run takes
    shared_prefix: bool = True
    # engine.logprob_chunk_tokens: the head and log-softmax this many kept tokens at a time (0: all at once)
    logprob_chunk: int = 0


class Learner:
    """Owns the optimizer over a model's trainable parameters and applies one GRPO step per batch.

    `autocast` (e.g. bf16) is the compute dtype of forward passes; the weights and AdamW state stay in the
    model's own dtype, fp32 for full fine-tuning (spec Part A 'loss': a bf16 weight rounds most lr-2e-6
    updates away, so the policy would silently stop learning).
    """

    def __init__(
        self,
        model: torch.nn.Module,
        settings: LearnerSettings,
        pad_id: int = 0,
        ref_model: torch.nn.Module | None = None,
        autocast: torch.dtype | None = None,
        device: torch.device | None = None,
    ):
        self.model, self.settings, self.pad_id, self.ref_model = model, settings, pad_id, ref_model
        self._device = device  # where inputs go; None: the parameters' device (not under FSDP CPU offload)
        self.autocast_dtype = None if autocast in (None, torch.float32) else autocast
        params = [p for p in model.parameters() if p.requires_grad]
        if not params:
            raise ValueError("the model has no trainable parameters")
        self.optimizer = torch.optim.AdamW(
            params, lr=settings.lr, betas=settings.betas, weight_decay=settings.weight_decay
        )
        self.steps = 0
        self.skipped_steps = 0

    @property
    def device(self) -> torch.device:
        return self._device or next(self.model.parameters()).device

    @property
    def temperature(self) -> float:
        t = self.settings.temperature
        return t if t > 0 else 1.0  # greedy rollouts have no distribution to match: plain softmax

    def compute(self) -> contextlib.AbstractContextManager[Any]:
        """The forward-pass precision: autocast to the compute dtype over fp32 master weights."""
        if self.autocast_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=self.autocast_dtype)

    @property
    def varlen(self) -> bool:
        """flash-attn reads sequence boundaries from the position ids; other kernels need a mask."""
        return self._attn_impl.startswith("flash")

    @property
    def _attn_impl(self) -> str:
        return str(getattr(getattr(self.model, "config", None), "_attn_implementation", "") or "")

    @property
    def layout(self) -> str:
        """shared (engine.shared_prefix; not with flash-attn's varlen kernel, which takes no tree mask),
        packed (engine.packing) or padded."""
        if self.settings.shared_prefix and not self.varlen:
            return SHARED
        return PACKED if self.settings.packing or self.settings.shared_prefix else PADDED

    def micro_batches(self, seqs: Sequence[TrainSequence]) -> list[list[int]]:
        return micro_batches(seqs, self.layout, self.settings.token_budget)

    def _response_logprobs(self, model: torch.nn.Module, b: dict[str, torch.Tensor]) -> torch.Tensor:
        """Log-probs of the last `resp` tokens of each row, shape [B, resp] (right-aligned, as collated)."""
        if "packed" in b:
            return self._packed_logprobs(model, b)
        dev = self.device
        resp = int(b["resp"])
        ids_tail = b["ids"][:, -(resp + 1) :].to(dev)
        targets = torch.cat([ids_tail[:, 1:], ids_tail[:, -1:]], 1)  # the last kept position predicts nothing
        lp = self._target_logprobs(
            model,
            targets,
            input_ids=b["ids"].to(dev),
            attention_mask=b["attn"].to(dev),
            position_ids=b["positions"].to(dev),
            logits_to_keep=resp + 1,
        )
        return lp[:, :-1]

    def _target_logprobs(self, model: torch.nn.Module, targets: torch.Tensor, **inputs: Any) -> torch.Tensor:
        """log p(targets) at the kept positions: from the whole head's logits, or a chunk of tokens at a time
        (engine.logprob_chunk_tokens, spell.engine.learner.chunked_head) so the logits never exist at once."""
        chunk = self.settings.logprob_chunk
        head = logprob_head(model, targets, self.temperature, chunk) if chunk > 0 else contextlib.nullcontext()
        with self.compute(), head:
            out = model(**inputs, use_cache=False)
        return out.logits if chunk > 0 else token_logprobs(out.logits, targets, self.temperature)

    def _packed_logprobs(self, model: torch.nn.Module, b: dict[str, Any]) -> torch.Tensor:
        row, dev = b["packed"], self.device
        if isinstance(row["attention_mask"], tuple) and self._attn_impl != "flex_attention" and not _distributed():
            # a dense mask computes every tile of the row: its blocks apart skip the cross-block ones (not under
            # FSDP, where each forward call gathers the weights again)
            parts = [(sel, self._row_logprobs(model, part)) for sel, part in row_blocks(row)]
            if parts:
                order = torch.argsort(torch.cat([sel for sel, _ in parts])).to(dev)
                flat = torch.cat([lp for _, lp in parts])[order]
            else:  # nothing to predict (empty responses)
                flat = torch.zeros(0, device=dev)
        else:
            flat = self._row_logprobs(model, row)
        resp = int(b["resp"])
        lengths = b["target_mask"].sum(1).long().to(dev)
        owner, col = row["owner"].to(dev), row["col"].to(dev)
        lp = torch.zeros((len(lengths), resp), dtype=flat.dtype, device=dev)
        return lp.index_put((owner, resp - lengths[owner] + col), flat)

    def _row_logprobs(self, model: torch.nn.Module, row: dict[str, Any]) -> torch.Tensor:
        """log p(target) at a row's kept positions, [K]: only positions that predict a response token."""
        dev, mask = self.device, row["attention_mask"]
        if isinstance(mask, tuple):  # (block ids, answer ids): the mask is built on the model's device
            dtype = self.autocast_dtype or next(model.parameters()).dtype
            mask = device_mask(*mask, self._attn_impl, dev, dtype)
        elif mask is not None:
            mask = mask.to(dev)
        return self._target_logprobs(
            model,
            row["targets"].to(dev)[None],
            input_ids=row["input_ids"].to(dev),
            position_ids=row["position_ids"].to(dev),
            attention_mask=mask,
            logits_to_keep=row["keep"].to(dev),
        )[0]

    def _batch(self, seqs: Sequence[TrainSequence]) -> dict[str, Any]:
        if self.layout == PADDED:
            return padded_batch(seqs, self.pad_id)
        return row_batch(seqs, self.layout, self.varlen)

    @torch.no_grad()
    def logprobs(self, seqs: Sequence[TrainSequence]) -> list[list[float]]:
        """Per-token log-probs of each response under the current weights (no gradient)."""
        if self.settings.sequence_parallel > 1:
            raise NotImplementedError("logprobs() runs on one rank; use a learner without sequence parallelism")
        was = self.model.training
        self.model.eval()
        out: list[list[float]] = [[] for _ in seqs]
        try:
            for mb in self.micro_batches(seqs):
                b = self._batch([seqs[i] for i in mb])
                lp = self._response_logprobs(self.model, b).float().cpu()
                for row, i in enumerate(mb):
                    n = len(seqs[i].response_ids)
                    out[i] = lp[row, lp.shape[1] - n :].tolist() if n else []
        finally:
            self.model.train(was)
        return out

    def backward(
        self, seqs: Sequence[TrainSequence], total_tokens: float | None = None, min_micro_batches: int = 0
    ) -> dict[str, float]:
        """Accumulate the whole batch's gradient over token-budget micro-batches (no optimizer step).

        Data parallel: `total_tokens` is the response-token count of the batch across all ranks (so the
        summed gradients equal one big batch), and `min_micro_batches` pads this rank's passes with
        zero-loss ones, because a sharded model's forward and backward are collectives every rank joins.
        """
        s = self.settings
        if total_tokens is None:
            total_tokens = float(sum(len(x.response_ids) for x in seqs))
        stats, loss_total, padded, real, seq_tokens = LossStats(), 0.0, 0, 0, 0
        micro = self.micro_batches(seqs)
        for mb in micro:
            if s.sequence_parallel > 1:
                loss, mb_stats, mb_padded, mb_real = self._sequence_parallel_loss([seqs[i] for i in mb], total_tokens)
                loss.backward()
                loss_total += float(loss.item())
                stats += mb_stats
                padded, real, seq_tokens = padded + mb_padded, real + mb_real, seq_tokens + mb_real
                continue
            b = self._batch([seqs[i] for i in mb])
            padded += b["tokens"]
            real += b["real"]
            seq_tokens += b["sequence_tokens"]
            lp = self._response_logprobs(self.model, b)
            mask = b["target_mask"].to(lp.device)
            old = torch.where(b["has_old"].to(lp.device)[:, None], b["old"].to(lp.device), lp.detach())
            ref = None
            if self.ref_model is not None and s.kl_coef > 0:
                with torch.no_grad():
                    ref = self._response_logprobs(self.ref_model, b)
            loss, mb_stats = policy_loss(
                lp,
                old,
                b["adv"].to(lp.device),
                mask,
                total_tokens=total_tokens,
                clip_low=s.clip_low,
                clip_high=s.clip_high,
                ref_logprobs=ref,
                kl_coef=s.kl_coef,
            )
            loss.backward()
            loss_total += float(loss.item())
            stats += mb_stats
        for _ in range(min_micro_batches - len(micro)):
            self._idle_pass()
        m = stats.means()
        return {
            "loss": loss_total,
            "clip_fraction": m["clip_fraction"],
            "ratio_mean": m["ratio_mean"],
            "kl_mean": m["kl_mean"],
            "tokens": total_tokens,
            "sequences": float(len(seqs)),
            "padding_fraction": 1.0 - real / max(padded, 1),
            "micro_batches": float(len(micro)),
            # tokens the model computed vs the trajectories' own lengths (< 1 with shared prefixes)
            "computed_tokens": float(padded),
            "sequence_tokens": float(seq_tokens),
        }

    def _sequence_parallel_loss(
        self, seqs: Sequence[TrainSequence], total_tokens: float
    ) -> tuple[torch.Tensor, LossStats, int, int]:
        """This rank's slice of the micro-batch through the model (attention exchanges the rest)."""
        import torch.distributed as dist

        from spell.engine.learner import ulysses

        s, dev = self.settings, self.device
        if self.ref_model is not None and s.kl_coef > 0:
            raise NotImplementedError("a KL reference model is not supported with sequence parallelism")
        b = ulysses.slice_batch(seqs, dist.get_rank(ulysses._GROUP), s.sequence_parallel, self.pad_id)
        lp = self._target_logprobs(
            self.model, b["targets"].to(dev), input_ids=b["ids"].to(dev), position_ids=b["positions"].to(dev)
        )
        old = torch.where(b["has_old"].to(dev)[:, None], b["old"].to(dev), lp.detach())
        loss, stats = policy_loss(
            lp,
            old,
            b["adv"].to(dev),
            b["target_mask"].to(dev),
            total_tokens=total_tokens,
            clip_low=s.clip_low,
            clip_high=s.clip_high,
        )
        return loss, stats, int(b["tokens"]), int(b["real"])

    def _idle_pass(self) -> None:
        """A forward and backward that contributes zero gradient (keeps sharded ranks in step)."""
        ids = torch.tensor([[self.pad_id, self.pad_id]], device=self.device)
        out = self.model(input_ids=ids, use_cache=False, logits_to_keep=1)
        (out.logits.float().sum() * 0.0).backward()

    def train_step(
        self, seqs: Sequence[TrainSequence], total_tokens: float | None = None, min_micro_batches: int = 0
    ) -> dict[str, float]:
        """One optimizer step on the whole batch; returns loss, grad norm, clip fraction, tokens, seconds.

        A non-finite loss or gradient norm skips the step (weights untouched) and reports `skipped=1`.
        Under data parallelism (see `backward`) the loss is summed over ranks, so every rank decides alike.
        """
        start = time.perf_counter()
        seqs = [x for x in seqs if x.response_ids]
        dist = _distributed()
        if not seqs and not dist:
            return {"loss": 0.0, "grad_norm": 0.0, "tokens": 0.0, "skipped": 1.0, "empty": 1.0, "seconds": 0.0}
        self.model.train()
        self.optimizer.zero_grad(set_to_none=True)
        metrics = self.backward(seqs, total_tokens, min_micro_batches)
        if dist:
            metrics["loss"] = _all_reduce_sum(metrics["loss"])
        params = [p for p in self.model.parameters() if p.requires_grad]
        norm = torch.nn.utils.clip_grad_norm_(params, self.settings.grad_clip)
        grad_norm = float(norm.full_tensor() if hasattr(norm, "full_tensor") else norm)  # DTensor when sharded
        skipped = not (math.isfinite(grad_norm) and math.isfinite(metrics["loss"]))
        if skipped:
            self.skipped_steps += 1
        else:
            self.optimizer.step()
            self.steps += 1
        self.optimizer.zero_grad(set_to_none=True)
        return {**metrics, "grad_norm": grad_norm, "skipped": float(skipped), "seconds": time.perf_counter() - start}


def _distributed() -> bool:
    return torch.distributed.is_available() and torch.distributed.is_initialized()


def _all_reduce_sum(x: float) -> float:
    t = torch.tensor([x], dtype=torch.float64)
    if torch.distributed.get_backend() == "nccl":
        t = t.cuda()
    torch.distributed.all_reduce(t)
    return float(t.item())
