# A tiny versatile model that trains in seconds on a 2-core CPU: for smoke tests and for
# checking the whole pipeline (train -> checkpoint -> resume -> export), not for use.
# Data: the real corpus (models/work/data) by default; tests point data_dir at synthetic data.
out_dir = "models/work/runs/tiny_smoke"
n_layer = 2
n_head = 2
d_model = 64
d_ff = 256
context_length = 128
batch_size = 8
max_steps = 40
warmup_steps = 5
learning_rate = 3e-3
min_lr = 3e-4
eval_interval = 20
eval_iters = 2
log_interval = 10
gumbel_anneal_frac = 0.8
warmup_untimed_steps = 1
