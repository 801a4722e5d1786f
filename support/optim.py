"""
The optimizers train.py can use besides GPT.configure_optimizers' AdamW: Muon beside AdamW, as one
optimizer (`optimizer = "muon"`), and AdamW with its state sharded over the processes
(`zero_stage = 1`).

Muon (torch.optim.Muon) takes the 2-D weights inside the transformer blocks: it keeps a momentum of
each matrix's gradient and steps along that momentum orthogonalised (a few Newton-Schulz iterations
push every singular value towards 1), so that no single direction dominates an update. The
embeddings, the tied output layer, the biases and the LayerNorm gains are not hidden matrices of that
kind and stay with AdamW, exactly as GPT.configure_optimizers sets it up.

The two act as one object with an optimizer's methods (step, zero_grad, param_groups, state_dict),
so train.py's loop, its learning-rate schedule, gradient clipping and the fp16 GradScaler work
unchanged. Each param group carries `lr_scale`: the ratio of its peak learning rate to
learning_rate, which the schedule multiplies in.
"""

import torch


class MuonWithAdamW:
    def __init__(self, model, muon_lr: float, muon_momentum: float, weight_decay: float,
                 learning_rate: float, betas: tuple, device_type: str, eps: float = 1e-8):
        hidden = [p for p in model.transformer.h.parameters() if p.dim() == 2]
        taken = {id(p) for p in hidden}
        rest = [p for p in model.parameters() if id(p) not in taken]
        print(f"optimizer: Muon on {len(hidden)} matrices in the blocks "
              f"({sum(p.numel() for p in hidden):,} parameters), AdamW on the rest")
        # match_rms_adamw scales each update to the size AdamW's would have, so weight_decay
        # means the same to both and muon_lr sits near learning_rate
        self.muon = torch.optim.Muon(hidden, lr=muon_lr, weight_decay=weight_decay,
                                     momentum=muon_momentum, adjust_lr_fn="match_rms_adamw")
        # AdamW's grouping for what is left: decay on the embeddings, none on biases and gains
        self.adamw = model.configure_optimizers(weight_decay, learning_rate, betas, device_type,
                                                eps, params=rest)
        for group in self.muon.param_groups:
            group["lr_scale"] = muon_lr / learning_rate

    @property
    def param_groups(self) -> list:
        # a property: load_state_dict replaces each optimizer's list of groups
        return self.muon.param_groups + self.adamw.param_groups

    def step(self):
        self.muon.step()
        self.adamw.step()

    def zero_grad(self, set_to_none: bool = True):
        self.muon.zero_grad(set_to_none)
        self.adamw.zero_grad(set_to_none)

    def state_dict(self) -> dict:
        return {"muon": self.muon.state_dict(), "adamw": self.adamw.state_dict()}

    def load_state_dict(self, state: dict):
        self.muon.load_state_dict(state["muon"])
        self.adamw.load_state_dict(state["adamw"])


def shard_over_processes(adamw: torch.optim.Optimizer) -> torch.optim.Optimizer:
    """ZeRO stage 1: the same AdamW with the same groups, each process keeping the moments of its
    share of the parameters and stepping only those, then broadcasting them to the others. DDP's
    all-reduce already gave every process the whole gradient, so the steps are unchanged."""
    from torch.distributed.optim import ZeroRedundancyOptimizer

    # each group carries all of its settings (lr, betas, eps, weight decay, fused)
    groups = [dict(g) for g in adamw.param_groups]
    return ZeroRedundancyOptimizer(groups, optimizer_class=type(adamw))
