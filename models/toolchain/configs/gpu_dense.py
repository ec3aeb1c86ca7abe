# The dense baseline of gpu_default.py: the same network with the FFN applied once and no
# routers (parameter count equal apart from the two routers' 12*d per layer), trained on
# the same tokens: gpu_run.sh passes --max_steps = the versatile run's final step.
out_dir = "models/work/runs/gpu_dense"
ffn_kind = "dense"
n_layer = 6
n_head = 6
d_model = 384
d_ff = 1024
context_length = 1024
batch_size = 64
grad_accum = 1
learning_rate = 2e-3
min_lr = 2e-4
warmup_steps = 200
max_steps = 20000
weight_decay = 0.1
grad_clip = 1.0
eval_interval = 500
eval_iters = 10
log_interval = 50
checkpoint_interval = -1
compile = True
warmup_untimed_steps = 5
plan_after_steps = 30
reserve_s = 25
