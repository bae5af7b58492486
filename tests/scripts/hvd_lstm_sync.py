"""Run under horovodrun: a few data-parallel steps of a small LSTM with different data per rank;
prints one parameter checksum per rank so the test can check that all ranks stayed in sync."""
import sys

import horovod.torch as hvd
import torch

hvd.init()
torch.manual_seed(1234 + hvd.rank())  # different init per rank: broadcast must fix it
torch.set_num_threads(1)
model = torch.nn.LSTM(input_size=8, hidden_size=16, batch_first=True)
optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
broadcast = sys.argv[1] == "broadcast"
if broadcast:
    hvd.broadcast_parameters(model.state_dict(), root_rank=0)
    optimizer = hvd.DistributedOptimizer(optimizer, named_parameters=model.named_parameters())
for step in range(5):
    x = torch.randn(4, 6, 8)  # rank-specific data (seeded per rank above)
    optimizer.zero_grad()
    out, _ = model(x)
    out.pow(2).mean().backward()
    optimizer.step()
checksum = sum(p.double().sum().item() for p in model.parameters())
print(f"rank={hvd.rank()} size={hvd.size()} checksum={checksum:.12f}", flush=True)
