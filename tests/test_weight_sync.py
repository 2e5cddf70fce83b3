"""The weight-sync protocol (spell.engine.sync.broadcast) over gloo, the CPU twin of the NCCL path: three
ranks in threads, buckets smaller than a tensor, bf16 on the wire, weights received in place."""

import threading

import pytest
import torch

from spell.engine.sync.broadcast import (
    SyncGroup,
    copy_into,
    plan_buckets,
    receive_weights,
    send_weights,
    sync_tensors,
)


def _model(seed: int) -> torch.nn.Module:
    torch.manual_seed(seed)
    m = torch.nn.Sequential(torch.nn.Embedding(50, 8), torch.nn.Linear(8, 8), torch.nn.LayerNorm(8))
    head = torch.nn.Linear(8, 50, bias=False)
    head.weight = m[0].weight  # tied, as in SmolLM2
    m.append(head)
    return m


def test_tied_weights_are_sent_once():
    names = list(sync_tensors(_model(0)))
    assert "3.weight" not in names and "0.weight" in names
    plan = plan_buckets(sync_tensors(_model(0)), 2, bucket_bytes=200)
    assert [m.name for b in plan for m in b] == names
    assert all(sum(m.numel for m in b) * 2 <= 200 or len(b) == 1 for b in plan)
    assert [len(b) for b in plan] == [1, 4]  # the 800-byte embedding alone, the rest together


@pytest.mark.parametrize("wire", [torch.float32, torch.bfloat16])
def test_broadcast_reaches_every_rank_in_place(wire):
    sender, receivers = _model(0), [_model(1), _model(2)]
    for r in receivers:
        r.to(wire)
    src = sync_tensors(sender)
    plan = plan_buckets(src, torch.empty((), dtype=wire).element_size(), bucket_bytes=300)
    host = SyncGroup.host("127.0.0.1", 3, "gloo", timeout_s=60)
    ptrs = [{n: t.data_ptr() for n, t in sync_tensors(r).items()} for r in receivers]
    stats, errors = {}, []

    def recv(rank: int, model: torch.nn.Module) -> None:
        try:
            group = SyncGroup(host.address, rank, 3, "gloo", timeout_s=60).connect()
            tensors = sync_tensors(model)
            stats[rank] = receive_weights(group, plan, wire, copy_into(tensors))
        except Exception as exc:  # surfaced below
            errors.append(exc)

    threads = [threading.Thread(target=recv, args=(k + 1, r)) for k, r in enumerate(receivers)]
    for t in threads:
        t.start()
    host.connect()
    stats[0] = send_weights(host, src, plan, wire)
    for t in threads:
        t.join(60)
    assert not errors
    want = sum(t.numel() for t in src.values()) * torch.empty((), dtype=wire).element_size()
    assert {s.bytes for s in stats.values()} == {want} and stats[0].buckets == len(plan)
    for r, before in zip(receivers, ptrs, strict=True):
        got = sync_tensors(r)
        for name, t in src.items():
            assert torch.equal(got[name], t.detach().to(wire)) and got[name].data_ptr() == before[name]
        assert r[3].weight is r[0].weight  # the tied head followed its embedding


class _Recording(SyncGroup):
    """A group whose broadcasts succeed (or fail) without peers, recording aborts."""

    def __init__(self, fail_at: int | None = None):
        super().__init__(("127.0.0.1", 0), 0, 2, "gloo", timeout_s=5)
        self.sent, self.aborted, self.fail_at = 0, 0, fail_at

    def broadcast(self, t):
        self.sent += 1
        if self.sent == self.fail_at:
            raise RuntimeError("peer gone")

    def abort(self):
        self.aborted += 1


def test_a_receiver_that_stops_reading_aborts_the_group_so_the_sender_does_not_wait_out_the_timeout():
    """Issue 27 item 3: an error in the consumer (vLLM's reload) or in a broadcast tears the group down."""
    from spell.engine.sync.broadcast import SyncStats, iter_received

    model = _model(0)
    plan = plan_buckets(sync_tensors(model), 4, 64)
    assert len(plan) >= 3
    group = _Recording()
    pairs = iter_received(group, plan, torch.float32, SyncStats())
    next(pairs)
    pairs.close()  # the consumer raised and stopped reading mid-plan
    assert group.aborted == 1 and group.sent == 1
    failing = _Recording(fail_at=2)
    with pytest.raises(RuntimeError, match="peer gone"):
        receive_weights(failing, plan, torch.float32, copy_into(sync_tensors(_model(1))))
    assert failing.aborted == 1
    sender = _Recording(fail_at=2)
    with pytest.raises(RuntimeError, match="peer gone"):
        send_weights(sender, sync_tensors(model), plan, torch.float32)
    assert sender.aborted == 1
    done = _Recording()
    receive_weights(done, plan, torch.float32, copy_into(sync_tensors(_model(1))))
    assert done.aborted == 0 and done.sent == len(plan)


def test_an_aborted_gloo_group_refuses_further_broadcasts():
    host = SyncGroup.host("127.0.0.1", 1, "gloo", timeout_s=10).connect()
    host.broadcast(torch.zeros(3))  # a world of one: the root alone
    host.abort()
    with pytest.raises(AssertionError, match="aborted"):
        host.broadcast(torch.zeros(3))


def test_a_sharded_learner_gathers_in_the_wire_dtype():
    """Issue 27 item 12: each shard is cast before its all-gather (bf16: half the bytes of the fp32 masters)."""
    from spell.engine.sync.sharded import GatheredTensors

    model = _model(0)
    gathered = GatheredTensors(model, torch.bfloat16)
    name = next(iter(gathered))
    assert gathered[name].dtype == torch.bfloat16
    assert torch.equal(gathered[name], model.state_dict()[name].to(torch.bfloat16))
    assert GatheredTensors(model)[name].dtype == torch.float32  # no wire dtype: as stored
