"""
Trains the VersatileFFN code LM (or its dense / k-loop baseline) on flat uint16 token
files with fill-in-the-middle, packing, AdamW + warmup/cosine, the Gumbel temperature
schedule, the load-balancing loss, periodic validation and routing statistics, and
checkpoints that resume exactly. Defaults are in train_config.py (TrainConfig) and
model.py (ModelConfig); config files and --key=value override them, left to right.

  python models/toolchain/train.py models/toolchain/configs/tiny_smoke.py
  python models/toolchain/train.py models/toolchain/configs/tiny_smoke.py --init_from=resume --max_steps=80
  torchrun --nproc_per_node=2 models/toolchain/train.py models/toolchain/configs/tiny_smoke.py --backend=gloo

Writes out_dir/ckpt.{safetensors,json,optim.pt} and out_dir/train_log.jsonl (one JSON
object per log line; rank 0 only).
"""
import contextlib
import json
import math
import os
import platform
import sys
import time
from dataclasses import asdict, replace

import numpy as np
import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel as DDP

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from checkpoint import CheckpointError, load_training_checkpoint, save_checkpoint  # noqa: E402
from data import TRAIN_STREAM, VAL_STREAM, Prefetcher, get_batch, open_tokens, read_meta  # noqa: E402
from model import VersatileLM, gumbel_tau  # noqa: E402
from train_config import ConfigError, load_config  # noqa: E402


def main(argv: list[str] | None = None) -> dict:
    """Runs training; returns a summary (step, tokens, losses, tokens/s) on every rank."""
    argv = sys.argv[1:] if argv is None else argv
    model_cfg, cfg, overrides = load_config(argv)
    cli_keys = {a[2:].partition("=")[0] for a in argv if a.startswith("--")}
    env = setup_distributed(cfg)
    try:
        return train(model_cfg, cfg, overrides, env, cli_keys)
    finally:
        if env["ddp"]:
            dist.destroy_process_group()


def setup_distributed(cfg) -> dict:
    rank, world = int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1))
    local_rank = int(os.environ.get("LOCAL_RANK", 0))
    use_cuda = cfg.device == "cuda" or (cfg.device == "auto" and torch.cuda.is_available())
    device = torch.device(f"cuda:{local_rank}" if use_cuda else "cpu")
    if use_cuda:
        torch.cuda.set_device(device)
    if cfg.threads > 0:
        torch.set_num_threads(cfg.threads)
    ddp = world > 1
    if ddp:
        backend = cfg.backend if cfg.backend != "auto" else ("nccl" if use_cuda else "gloo")
        dist.init_process_group(backend=backend)
    return {"rank": rank, "world": world, "ddp": ddp, "device": device, "master": rank == 0}


def train(model_cfg, cfg, overrides: dict, env: dict, cli_keys: set = frozenset()) -> dict:
    """A resumed run keeps its checkpoint's model config and schedule (planned max_steps,
    Gumbel decay) unless --max_steps or --time_budget_s is given on the command line."""
    rank, world, device, master = env["rank"], env["world"], env["device"], env["master"]
    cuda = device.type == "cuda"
    if cuda:
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True

    model_cfg, ckpt, data_meta = resolve_model_config(model_cfg, cfg, overrides)
    train_tokens = open_tokens(os.path.join(cfg.data_dir, "train.bin"), model_cfg.vocab_size)
    val_tokens = open_tokens(os.path.join(cfg.data_dir, "val.bin"), model_cfg.vocab_size)

    torch.manual_seed(cfg.seed)
    raw_model = VersatileLM(model_cfg).to(device)
    optimizer = make_optimizer(raw_model, cfg, cuda)
    step, tokens_seen, max_steps, gumbel_decay = restore_state(raw_model, optimizer, ckpt, cfg, cli_keys)
    del ckpt
    model = torch.compile(raw_model) if cfg.compile else raw_model
    eval_model = model
    if env["ddp"]:
        model = DDP(model, device_ids=[device.index] if cuda else None)
    autocast = (torch.autocast("cuda", dtype=torch.bfloat16) if cuda else contextlib.nullcontext())

    tokens_per_step = cfg.batch_size * model_cfg.context_length * cfg.grad_accum * world
    log = Logger(os.path.join(cfg.out_dir, "train_log.jsonl") if master else None)
    log.write({"event": "start", "step": step, "params": raw_model.num_params(), "ffn_kind": model_cfg.ffn_kind,
               "world_size": world, "device": str(device), "tokens_per_step": tokens_per_step,
               "train_tokens": len(train_tokens), "val_tokens": len(val_tokens), "max_steps": max_steps},
              f"{model_cfg.ffn_kind} model, {raw_model.num_params():,} parameters, {tokens_per_step:,} tokens/step, "
              f"{len(train_tokens):,} train tokens, device {device}, world {world}")

    val_batches = validation_batches(val_tokens, cfg, model_cfg, device) if master and cfg.eval_interval > 0 else []

    def make_batch(s, micro):
        return get_batch(train_tokens, seed=cfg.seed, stream=TRAIN_STREAM, rank=rank, step=s, micro=micro,
                         batch_size=cfg.batch_size, context_length=model_cfg.context_length,
                         fim_rate=cfg.fim_rate, spm_rate=cfg.spm_rate)

    prefetcher = Prefetcher(make_batch, step, cfg.grad_accum, cfg.prefetch) if cfg.prefetch > 0 else None
    t_start = time.time()
    start_step = step
    eval_seconds: list[float] = []
    last_eval = {"step": None}
    timed = {"steps": 0, "seconds": 0.0}
    interval = new_interval(device)
    # Fit max_steps to the time budget, except when resuming a schedule already fitted.
    planned = cfg.time_budget_s <= 0 or (start_step > 0 and not {"max_steps", "time_budget_s"} & cli_keys)
    stop_reason = "max_steps"
    last_train_loss = None

    def run_eval():
        t0 = time.time()
        loss, stats = evaluate(eval_model, val_batches, autocast, model_cfg.n_experts)
        eval_seconds.append(time.time() - t0)
        last_eval.update(step=step, val_loss=loss, routing=stats)
        log.write({"event": "eval", "step": step, "tokens": tokens_seen, "val_loss": loss,
                   "eval_s": round(eval_seconds[-1], 3), "routing": stats},
                  f"step {step}: val loss {loss:.4f}" + format_routing(stats))

    def write_checkpoint():
        t0 = time.time()
        meta = checkpoint_meta(model_cfg, cfg, step, tokens_seen, max_steps, gumbel_decay, tau_at(step), last_eval,
                               device, world, tokens_per_step, data_meta, timed)
        optim_state = {"optimizer": optimizer.state_dict(), "torch_rng": torch.get_rng_state(),
                       "cuda_rng": torch.cuda.get_rng_state_all() if cuda else None}
        save_checkpoint(cfg.out_dir, raw_model, meta, optim_state)
        log.write({"event": "checkpoint", "step": step, "save_s": round(time.time() - t0, 3)},
                  f"step {step}: checkpoint saved to {cfg.out_dir} ({time.time() - t0:.1f}s)")

    def tau_at(s):
        return gumbel_tau(s, cfg.gumbel_tau_start, cfg.gumbel_tau_end, gumbel_decay)

    def next_batch(s, micro):
        return prefetcher.get(s, micro) if prefetcher else make_batch(s, micro)

    try:
        while True:
            if master and cfg.eval_interval > 0 and step % cfg.eval_interval == 0 and step != start_step:
                run_eval()
                if cfg.checkpoint and cfg.checkpoint_interval == 0 and step < max_steps:
                    write_checkpoint()
            if master and cfg.checkpoint and cfg.checkpoint_interval > 0 and step % cfg.checkpoint_interval == 0 \
                    and step != start_step and step < max_steps:
                write_checkpoint()
            if step >= max_steps:
                break

            t_step = time.time()
            lr = lr_at(step, cfg, max_steps)
            aux = optimizer_step(model, raw_model, optimizer, cfg, env, step, lr, tau_at(step), next_batch,
                                 autocast, interval)
            step += 1
            tokens_seen += tokens_per_step
            interval["steps"] += 1
            account_step_time(cfg, step - start_step, step, t_step, t_start, timed, interval, cuda, device, log)

            if not planned and timed["steps"] >= cfg.plan_after_steps:
                if cuda:
                    torch.cuda.synchronize()
                max_steps = plan_steps(cfg, step, max_steps, t_start, timed, eval_seconds, run_eval if master else None,
                                       env, log)
                gumbel_decay = schedule_decay(cfg, max_steps)
                planned = True
            if cfg.stop_after_steps > 0 and step - start_step >= cfg.stop_after_steps and step < max_steps:
                stop_reason = "stop_after_steps"
                break
            if cfg.time_budget_s > 0 and over_budget(cfg, t_start, env):
                stop_reason = "time_budget"
                log.write({"event": "stop", "step": step, "reason": "time_budget"},
                          f"step {step}: stopping, time budget of {cfg.time_budget_s:.0f}s nearly spent")
                break

            if step % cfg.log_interval == 0 or step == max_steps:
                last_train_loss = log_train_interval(log, interval, step, max_steps, tokens_seen, tokens_per_step, lr,
                                                     tau_at(step - 1), aux, model_cfg.n_experts if master else None,
                                                     device)

    finally:
        if prefetcher:
            prefetcher.close()
    if master:
        if cfg.eval_interval > 0 and last_eval["step"] != step:
            run_eval()
        if cfg.checkpoint:
            write_checkpoint()
    summary = {"step": step, "tokens": tokens_seen, "stop_reason": stop_reason,
               "val_loss": last_eval.get("val_loss"), "train_loss": last_train_loss,
               "tokens_per_s": tokens_per_second(timed, tokens_per_step), "timed_steps": timed["steps"],
               "wall_s": round(time.time() - t_start, 2), "params": raw_model.num_params(),
               "ffn_kind": model_cfg.ffn_kind, "device": hardware_name(device), "world_size": world}
    log.write(dict(summary, event="done"), f"done: step {step}, {tokens_seen:,} tokens, "
              f"{summary['tokens_per_s']:,.0f} tok/s (timed steps, data loading included), "
              f"wall {summary['wall_s']}s, stop: {stop_reason}")
    return summary


def resolve_model_config(model_cfg, cfg, overrides: dict):
    """(model config, training checkpoint or None, data meta.json): a resumed run keeps its
    checkpoint's model config; a new one takes vocab_size from meta.json unless overridden."""
    ckpt = None
    if cfg.init_from == "resume":
        ckpt = load_training_checkpoint(cfg.out_dir, with_optimizer=True)
        model_cfg = ckpt["model_config"]
    elif cfg.init_from != "scratch":
        raise ConfigError(f"init_from={cfg.init_from!r}: expected 'scratch' or 'resume'")
    data_meta = read_meta(cfg.data_dir)
    if ckpt is None and "vocab_size" not in overrides and "vocab_size" in data_meta:
        model_cfg = replace(model_cfg, vocab_size=int(data_meta["vocab_size"]))
    return model_cfg, ckpt, data_meta


def restore_state(raw_model, optimizer, ckpt, cfg, cli_keys) -> tuple[int, int, int, float]:
    """(step, tokens seen, max_steps, Gumbel decay): a fresh run's, or the checkpoint's after
    loading its weights and optimizer state (its schedule unless --max_steps is given)."""
    step, tokens_seen = 0, 0
    max_steps, gumbel_decay = cfg.max_steps, schedule_decay(cfg, cfg.max_steps)
    if ckpt is not None:
        raw_model.load_state_dict(ckpt["state_dict"])
        optimizer.load_state_dict(ckpt["optim_state"]["optimizer"])
        meta = ckpt["meta"]
        step, tokens_seen = meta["step"], meta["tokens"]
        if "max_steps" not in cli_keys:
            max_steps, gumbel_decay = meta["schedule"]["max_steps"], meta["schedule"]["gumbel_decay"]
    return step, tokens_seen, max_steps, gumbel_decay


def validation_batches(val_tokens, cfg, model_cfg, device) -> list:
    """The fixed validation batches (eval_iters of them, on the device), the same for every eval."""
    return [to_device(*get_batch(val_tokens, seed=cfg.seed, stream=VAL_STREAM, rank=0, step=i, micro=0,
                                 batch_size=cfg.batch_size, context_length=model_cfg.context_length,
                                 fim_rate=cfg.fim_rate, spm_rate=cfg.spm_rate), device)
            for i in range(cfg.eval_iters)]


def new_interval(device) -> dict:
    """What the train log line averages over: since when, steps, summed loss, data wait (s)."""
    return {"t": time.time(), "steps": 0, "loss": torch.zeros((), device=device), "data": 0.0}


def optimizer_step(model, raw_model, optimizer, cfg, env, step: int, lr: float, tau: float, next_batch, autocast,
                   interval: dict) -> dict:
    """One optimizer step over grad_accum micro-batches; adds the loss and the data wait to
    `interval` and returns the last micro-batch's aux (balance loss, routing). The RNG is
    re-seeded from the step so Gumbel noise is a function of (seed, rank, step): resuming
    reproduces a straight run exactly."""
    torch.manual_seed(int(np.random.SeedSequence([cfg.seed, 2, env["rank"], step]).generate_state(1)[0]))
    for group in optimizer.param_groups:
        group["lr"] = lr
    tau = torch.tensor(tau, device=env["device"])
    for micro in range(cfg.grad_accum):
        t_data = time.time()
        x, y = to_device(*next_batch(step, micro), env["device"])
        interval["data"] += time.time() - t_data
        sync = (not env["ddp"]) or micro == cfg.grad_accum - 1
        with (contextlib.nullcontext() if sync else model.no_sync()), autocast:
            _, loss, aux = model(x, y, tau)
            total = loss + cfg.balance_coef * aux["balance_loss"]
            if cfg.loop_balance_coef > 0:
                total = total + cfg.loop_balance_coef * loop_balance_loss(aux["routing"])
            total = total / cfg.grad_accum
        total.backward()
        interval["loss"] += loss.detach() / cfg.grad_accum
    if cfg.grad_clip > 0:
        torch.nn.utils.clip_grad_norm_(raw_model.parameters(), cfg.grad_clip)
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    return aux


def account_step_time(cfg, steps_run: int, step: int, t_step: float, t_start: float, timed: dict, interval: dict,
                      cuda: bool, device, log) -> None:
    """Adds a step's time to `timed` once the first warmup_untimed_steps (compilation) are over;
    at the end of those, restarts the log interval and logs warmup_done."""
    if steps_run > cfg.warmup_untimed_steps:
        if cuda and timed["steps"] == 0:
            torch.cuda.synchronize()
        timed["steps"] += 1
        timed["seconds"] += time.time() - t_step
    elif steps_run == cfg.warmup_untimed_steps:
        if cuda:
            torch.cuda.synchronize()
        interval.update(new_interval(device))
        log.write({"event": "warmup_done", "step": step, "elapsed_s": round(time.time() - t_start, 2)},
                  f"step {step}: warm-up (compilation) done after {time.time() - t_start:.1f}s")


def log_train_interval(log, interval: dict, step: int, max_steps: int, tokens_seen: int, tokens_per_step: int,
                       lr: float, tau: float, aux: dict, n_experts, device) -> float:
    """Logs the interval's mean loss, speed and data wait (and routing statistics when
    n_experts is given: rank 0), restarts the interval and returns the mean loss."""
    loss_value = interval["loss"].item() / max(1, interval["steps"])
    dt = time.time() - interval["t"]
    tok_s = interval["steps"] * tokens_per_step / dt if dt > 0 else 0.0
    rec = {"event": "train", "step": step, "tokens": tokens_seen, "loss": loss_value, "lr": lr,
           "tau": tau, "balance_loss": float(aux["balance_loss"].detach()),
           "tok_s": round(tok_s), "data_ms_per_step": round(1000 * interval["data"] / max(1, interval["steps"]), 2),
           "step_ms": round(1000 * dt / max(1, interval["steps"]), 2)}
    stats = routing_stats(aux["routing"], n_experts) if n_experts is not None else None
    if stats:
        rec["routing"] = stats
    log.write(rec, f"step {step}/{max_steps}: loss {loss_value:.4f}, lr {lr:.2e}, tau {rec['tau']:.3f}, "
                   f"{tok_s:,.0f} tok/s, data wait {rec['data_ms_per_step']} ms/step" + format_routing(stats))
    interval.update(new_interval(device))
    return loss_value


def checkpoint_meta(model_cfg, cfg, step: int, tokens_seen: int, max_steps: int, gumbel_decay: float, tau: float,
                    last_eval: dict, device, world: int, tokens_per_step: int, data_meta: dict, timed: dict) -> dict:
    """The checkpoint's ckpt.json: configs, position and schedule, last eval, and how it was trained."""
    return {"model_config": model_cfg.to_dict(), "train_config": asdict(cfg), "step": step,
            "tokens": tokens_seen, "schedule": {"max_steps": max_steps, "gumbel_decay": gumbel_decay},
            "gumbel_tau": tau, "metrics": {"val_loss": last_eval.get("val_loss"),
                                           "val_loss_step": last_eval.get("step")},
            "routing": last_eval.get("routing"),
            "training": {"hardware": hardware_name(device), "world_size": world, "tokens": tokens_seen,
                         "steps": step, "tokens_per_step": tokens_per_step, "torch": torch.__version__,
                         "data_dir": cfg.data_dir, "corpus": data_meta.get("corpus", data_meta.get("name")),
                         "tokens_per_s": tokens_per_second(timed, tokens_per_step),
                         "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}}


def loop_balance_loss(routing):
    """Switch-style balance over loop counts, summed over layers: L * sum_l (share of tokens
    sampled at l) * (mean depth-router probability of l). Not in the paper (its only
    auxiliary loss is on the expert router); off unless loop_balance_coef > 0."""
    total = 0.0
    for r in routing:
        if r is None:
            continue
        probs = r["loop_probs"].reshape(-1, r["loop_probs"].shape[-1])
        share = torch.nn.functional.one_hot(r["loops"].reshape(-1) - 1, probs.shape[-1]).float().mean(0)
        total = total + probs.shape[-1] * (share * probs.mean(0)).sum()
    return total


def make_optimizer(model, cfg, cuda: bool):
    decay = [p for p in model.parameters() if p.dim() >= 2]
    no_decay = [p for p in model.parameters() if p.dim() < 2]
    groups = [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    return torch.optim.AdamW(groups, lr=cfg.learning_rate, betas=(cfg.beta1, cfg.beta2), fused=cuda)


def lr_at(step: int, cfg, max_steps: int) -> float:
    if step < cfg.warmup_steps:
        return cfg.learning_rate * (step + 1) / cfg.warmup_steps
    if step >= max_steps:
        return cfg.min_lr
    ratio = (step - cfg.warmup_steps) / max(1, max_steps - cfg.warmup_steps)
    return cfg.min_lr + 0.5 * (1 + math.cos(math.pi * ratio)) * (cfg.learning_rate - cfg.min_lr)


def schedule_decay(cfg, max_steps: int) -> float:
    """Per-step Gumbel temperature decay: the reference code's constant, or one that
    reaches gumbel_tau_end at gumbel_anneal_frac of the run (short runs never anneal
    with 0.99984: it needs ~24k steps to go from 5 to 0.1)."""
    if cfg.gumbel_anneal_frac <= 0:
        return cfg.gumbel_decay
    anneal_steps = max(1.0, cfg.gumbel_anneal_frac * max_steps)
    return (cfg.gumbel_tau_end / cfg.gumbel_tau_start) ** (1.0 / anneal_steps)


def plan_steps(cfg, step, max_steps, t_start, timed, eval_seconds, run_eval, env, log) -> int:
    """Fit max_steps to the time budget from measured step (and eval) time; rank 0
    decides and every rank adopts its plan."""
    planned = max_steps
    if env["master"]:
        while run_eval is not None and cfg.eval_interval > 0 and len(eval_seconds) < 2:
            run_eval()  # the first eval includes compilation; time a warm one
        step_s = timed["seconds"] / timed["steps"]
        eval_s = eval_seconds[-1] if eval_seconds and cfg.eval_interval > 0 else 0.0
        per_step = step_s + (eval_s / cfg.eval_interval if cfg.eval_interval > 0 else 0.0)
        remaining = cfg.time_budget_s - (time.time() - t_start) - cfg.reserve_s
        planned = min(max_steps, step + max(0, int(remaining / per_step)))
        log.write({"event": "plan", "step": step, "max_steps": planned, "step_s": round(step_s, 4),
                   "eval_s": round(eval_s, 3), "remaining_s": round(remaining, 1)},
                  f"step {step}: {step_s * 1000:.1f} ms/step, eval {eval_s:.2f}s -> max_steps {planned} "
                  f"to fit the {cfg.time_budget_s:.0f}s budget")
    if env["ddp"]:
        t = torch.tensor([planned], dtype=torch.int64, device=env["device"])
        dist.broadcast(t, 0)
        planned = int(t.item())
    return planned


def over_budget(cfg, t_start, env) -> bool:
    over = time.time() - t_start > cfg.time_budget_s - cfg.reserve_s / 2
    if env["ddp"]:
        t = torch.tensor([int(over)], device=env["device"])
        dist.all_reduce(t, op=dist.ReduceOp.MAX)
        over = bool(t.item())
    return over


@torch.no_grad()
def evaluate(model, batches, autocast, n_experts: int) -> tuple[float, list | None]:
    """Mean loss over the fixed validation batches with inference routing (argmax loops)."""
    if not batches:
        return float("nan"), None
    model.eval()
    losses, per_batch_stats = [], []
    for x, y in batches:
        with autocast:
            _, loss, aux = model(x, y, torch.tensor(1.0, device=x.device))
        losses.append(loss.float())
        per_batch_stats.append(routing_tensor(aux["routing"], n_experts))
    model.train()
    stats = None
    if per_batch_stats[0] is not None:
        stats = stats_to_list(torch.stack(per_batch_stats).mean(0), n_experts)
    return torch.stack(losses).mean().item(), stats


def routing_tensor(routing, n_experts: int):
    """[n_versatile_layers, 1 + L + E] on the device: mean loops, share of tokens per loop
    count, share of routed expert slots per expert. No host sync."""
    rows = []
    for r in routing:
        if r is None:
            continue
        loops, experts = r["loops"].reshape(-1), r["experts"].reshape(-1)
        loop_share = torch.bincount(loops - 1, minlength=r["loop_probs"].shape[-1]).float() / loops.numel()
        load = torch.bincount(experts, minlength=n_experts).float() / experts.numel()
        rows.append(torch.cat([loops.float().mean().unsqueeze(0), loop_share, load]))
    return torch.stack(rows) if rows else None


def routing_stats(routing, n_experts: int):
    t = routing_tensor(routing, n_experts)
    return None if t is None else stats_to_list(t, n_experts)


def stats_to_list(t, n_experts: int) -> list:
    rows = t.float().cpu().tolist()
    n_loops = len(rows[0]) - 1 - n_experts
    return [{"mean_loops": round(r[0], 3), "loop_share": [round(v, 4) for v in r[1:1 + n_loops]],
             "expert_load": [round(v, 4) for v in r[1 + n_loops:]]} for r in rows]


def format_routing(stats) -> str:
    if not stats:
        return ""
    loops = " ".join(f"{s['mean_loops']:.2f}" for s in stats)
    experts_min = min(min(s["expert_load"]) for s in stats)
    return f" | mean loops/layer [{loops}] | min expert load {experts_min:.3f}"


def to_device(x: np.ndarray, y: np.ndarray, device):
    xt, yt = torch.from_numpy(x), torch.from_numpy(y)
    if device.type == "cuda":
        return xt.pin_memory().to(device, non_blocking=True), yt.pin_memory().to(device, non_blocking=True)
    return xt, yt


def tokens_per_second(timed: dict, tokens_per_step: int) -> float:
    return round(timed["steps"] * tokens_per_step / timed["seconds"], 1) if timed["seconds"] > 0 else 0.0


def hardware_name(device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    name = platform.processor() or "cpu"
    try:
        with open("/proc/cpuinfo") as f:
            name = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return f"{os.cpu_count()}-core CPU ({name})"


class Logger:
    """Prints and appends JSON lines; a no-op on ranks other than 0."""

    def __init__(self, path: str | None):
        self.path = path
        if path:
            os.makedirs(os.path.dirname(path) or ".", exist_ok=True)

    def write(self, record: dict, text: str):
        if not self.path:
            return
        print(text, flush=True)
        with open(self.path, "a") as f:
            f.write(json.dumps(dict(record, time=round(time.time(), 3))) + "\n")


if __name__ == "__main__":
    try:
        main()
    except (ConfigError, CheckpointError, FileNotFoundError, ValueError) as e:
        print(f"train.py: error: {e}", file=sys.stderr)
        sys.exit(2)
