# The default VersatileFFN code model, trained on one H100/H200 inside one 10-minute
# command (gpu_run.sh gives it a time budget; max_steps is then fitted to that budget
# from measured step time, after torch.compile's warm-up steps).
# Size: 6 x 384 with d_ff 1024 and vocab from meta.json (12288 planned): ~15.3M parameters,
# ~30.6 MB in fp16, so this model and its dense baseline together fit the 64 MiB that
# comes back from the GPU machine. ~1.0M tok/s was measured on the GPU machine (H100) for a
# 17M VersatileFFN with torch.compile: ~300 s of training is ~300M tokens.
out_dir = "models/work/runs/gpu_default"
ffn_kind = "versatile"
n_layer = 6
n_head = 6
d_model = 384
d_ff = 1024
context_length = 1024
batch_size = 64                 # 64 x 1024 = 65,536 tokens per step
grad_accum = 1
learning_rate = 2e-3
min_lr = 2e-4
warmup_steps = 200
max_steps = 20000               # upper bound; the time budget sets the real end
weight_decay = 0.1
grad_clip = 1.0
balance_coef = 1e-2             # Switch-Transformer value (paper 1e-5 was for upcycling); see TRAINING.md
loop_balance_coef = 1e-2        # keeps loop counts in use (not in the paper; 0 collapsed layers to one loop count)
gumbel_anneal_frac = 0.8        # tau 5 -> 0.1 over the first 80% of the planned steps
eval_interval = 500
eval_iters = 10
log_interval = 50
checkpoint_interval = -1        # only at the end: a 10-minute run has nothing to resume
compile = True
warmup_untimed_steps = 5
plan_after_steps = 30
reserve_s = 25
