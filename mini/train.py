"""Train the mini CLAP: a small HTSAT + RoBERTa ``transformers.ClapModel`` on the generated world of
``mini/world.py``, with a contrastive loss, on the CPU.

It is a test instrument and a demo, not a model of real sound: it lets text-in/events-out be measured through
the real export and detector, where the tests' random-weight CLAP can only show that code paths run.
Deterministic for a seed and a thread count (seeded torch and numpy, deterministic kernels): the same command
gives the same weights.

    python -m mini.train --out mini/clap --seed 20        # the committed checkpoint
    python -m mini.train --out /tmp/x --steps 1 --pool 8  # a smoke run

Training features are made by the detector's own numpy front end, so the model learns on exactly what the
exported encoder will be fed: 3 s windows, repeat-padded to the model's 10 s input.
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
import time
from pathlib import Path

import numpy as np

from mini import world
from streamdetect.embed.frontend import LogMelFrontend
from streamdetect.export.offline import checkpoint_feature_extractor, offline_tokenizer
from streamdetect.model.manifest import FrontendParams
from streamdetect.util.cpu import CpuInfo


def build_model(vocab_size: int, seed: int):
    """The mini architecture: the real HTSAT/RoBERTa layout, a few hundred thousand weights."""
    import torch
    from transformers import ClapConfig, ClapModel

    torch.manual_seed(seed)
    config = ClapConfig(
        text_config=dict(vocab_size=vocab_size, hidden_size=64, num_hidden_layers=2, num_attention_heads=2,
                         intermediate_size=128, max_position_embeddings=40, hidden_dropout_prob=0.0,
                         attention_probs_dropout_prob=0.0),
        # 8x8 patches and three stages: a quarter of the tokens of CLAP's 4x4, which is what makes CPU training fit
        audio_config=dict(patch_embeds_hidden_size=32, hidden_size=128, depths=[1, 1, 2], num_attention_heads=[1, 2, 4],
                          window_size=8, patch_size=8, patch_stride=[8, 8]),
        projection_dim=32, projection_hidden_act="gelu",  # relu units die here and the text tower collapses
    )
    model = ClapModel(config)
    _widen_text_init(model)
    return model


def _widen_text_init(model) -> None:
    """Re-draw the text tower's weights at unit-variance scale. At the library's init (std 0.02 embeddings,
    small projections) every caption's first-token state is nearly the same, so the contrastive loss sees no
    text signal and the tower collapses to one embedding; at this scale captions start apart."""
    import torch

    with torch.no_grad():
        for module in [*model.text_model.modules(), *model.text_projection.modules()]:
            if isinstance(module, torch.nn.Linear):
                torch.nn.init.normal_(module.weight, std=module.in_features ** -0.5)
                torch.nn.init.zeros_(module.bias)
            elif isinstance(module, torch.nn.Embedding):
                torch.nn.init.normal_(module.weight, std=1.0)


class Pool:
    """Training examples, partly refreshed each step: fresh clips without paying for a whole batch of them."""

    def __init__(self, seed: int, size: int, frontend: LogMelFrontend, tokenizer, cut: float = 0.0):
        self.rng, self.cut = np.random.default_rng(seed), cut
        self.frontend, self.tokenizer = frontend, tokenizer
        self.feats = np.zeros((size, 1, frontend.params.n_frames, frontend.params.n_mels), np.float16)
        self.labels: list[tuple[str, ...]] = [()] * size
        for i in range(size):
            self.refill(i)

    def refill(self, i: int) -> None:
        labels = world.training_labels(self.rng)
        self.feats[i] = self.frontend(world.make_clip(self.rng, labels, cut=self.cut).audio)
        self.labels[i] = labels

    def batch(self, size: int, refresh: int):
        import torch

        picked = self.rng.choice(len(self.labels), size, replace=False)
        for i in picked[:refresh]:
            self.refill(int(i))
        labels = [self.labels[i] for i in picked]
        captions = [world.caption(self.rng, lab) for lab in labels]
        text = self.tokenizer(captions, padding=True, return_tensors="pt")
        same = np.array([[a == b for b in labels] for a in labels], np.float32)
        classes = np.array([[c in lab for c in world.CLASSES] for lab in labels], np.float32)
        return (torch.from_numpy(self.feats[picked].astype(np.float32)), text, torch.from_numpy(same),
                torch.from_numpy(classes))


def contrastive_loss(logits, same):
    """CLIP's symmetric cross-entropy, with every pair of the same class(es) counted as a positive, so that two
    clips of one class in a batch are not pushed apart."""
    import torch

    target = same / same.sum(dim=1, keepdim=True)
    a = -(target * torch.log_softmax(logits, dim=1)).sum(dim=1).mean()
    t = -(target * torch.log_softmax(logits.T, dim=1)).sum(dim=1).mean()
    return (a + t) / 2


def anchored_loss(out, same, classes, prototypes, scale: float = 10.0):
    """The contrastive loss plus both towers' embeddings classified against one shared set of class directions.

    Contrastive learning from scratch with small batches stalls here: while the audio tower is uninformative the
    best text embedding is the mean, the text tower collapses, and then the audio tower gets no signal. The
    shared directions pull a clip and the captions of its class(es) towards the same point from the first step,
    so the joint space forms; the contrastive term keeps the geometry CLAP scoring expects.
    """
    import torch

    target = classes / classes.sum(dim=1, keepdim=True)
    directions = torch.nn.functional.normalize(prototypes, dim=-1)
    aux = sum(-(target * torch.log_softmax(scale * emb @ directions.T, dim=1)).sum(dim=1).mean()
              for emb in (out.audio_embeds, out.text_embeds))
    return contrastive_loss(out.logits_per_audio, same) + aux / 2


def warm_text(model, tokenizer, prototypes, optimizer, rng: np.random.Generator, steps: int, batch: int) -> None:
    """Teach the text tower the class directions first (text only, cheap). From scratch a first-token-pooled
    RoBERTa sits at chance for ~100 steps before it separates captions; paid here, that plateau costs no audio
    forward passes, and the joint training starts with a text side that already tells the classes apart."""
    import torch

    for _ in range(steps):
        labels = [world.training_labels(rng) for _ in range(batch)]
        text = tokenizer([world.caption(rng, lab) for lab in labels], padding=True, return_tensors="pt")
        classes = torch.tensor([[c in lab for c in world.CLASSES] for lab in labels], dtype=torch.float32)
        emb = torch.nn.functional.normalize(model.get_text_features(**text).pooler_output, dim=-1)
        directions = torch.nn.functional.normalize(prototypes, dim=-1)
        target = classes / classes.sum(dim=1, keepdim=True)
        loss = -(target * torch.log_softmax(10.0 * emb @ directions.T, dim=1)).sum(dim=1).mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()


def held_out_accuracy(model, tokenizer, frontend, n_per_class: int = 4) -> float:
    """Zero-shot top-1 on fresh clips from evaluation seeds, in torch (the real check goes through the export)."""
    import torch

    rng = np.random.default_rng(world.EVAL_SEED_BASE + 999)
    feats = np.concatenate([frontend(world.make_clip(rng, (c,)).audio)
                            for c in world.CLASSES for _ in range(n_per_class)])
    truth = np.repeat(np.arange(len(world.CLASSES)), n_per_class)
    model.eval()
    with torch.no_grad():
        text = tokenizer([world.prompt(c) for c in world.CLASSES], padding=True, return_tensors="pt")
        t = model.get_text_features(**text).pooler_output
        a = model.get_audio_features(input_features=torch.from_numpy(feats)).pooler_output
        sim = torch.nn.functional.normalize(a, dim=-1) @ torch.nn.functional.normalize(t, dim=-1).T
    model.train()
    return float((sim.argmax(dim=1).numpy() == truth).mean())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, required=True, help="checkpoint folder (save_pretrained layout)")
    parser.add_argument("--seed", type=int, default=20, help=f"training seed (below {world.EVAL_SEED_BASE})")
    parser.add_argument("--steps", type=int, default=1600)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--pool", type=int, default=384, help="examples kept in memory")
    parser.add_argument("--refresh", type=int, default=4, help="examples of each batch regenerated first")
    parser.add_argument("--lr", type=float, default=3e-3)
    parser.add_argument("--threads", type=int, default=1, help="torch threads (part of what fixes the weights)")
    parser.add_argument("--text-steps", type=int, default=150, help="text-only warm-up steps")
    parser.add_argument("--cut", type=float, default=0.3,
                        help="share of training events that run over the window's edge, as in a stream")
    parser.add_argument("--eval-every", type=int, default=0, help="print held-out accuracy every N steps")
    args = parser.parse_args(argv)
    if not 0 <= args.seed < world.EVAL_SEED_BASE:
        parser.error(f"--seed must be in [0, {world.EVAL_SEED_BASE}): higher seeds are kept for evaluation")
    import torch
    from tqdm import tqdm
    from transformers import ClapProcessor

    torch.set_num_threads(args.threads)  # a fixed thread count: the same partial sums, so the same weights
    torch.use_deterministic_algorithms(True)
    started = time.time()
    # 32 tokens: room for any caption here, and inside the 40 positions the text tower has
    tokenizer = offline_tokenizer(model_max_length=32, corpus=world.caption_corpus() * 4, vocab_size=600)
    model = build_model(len(tokenizer), args.seed).train()
    frontend = LogMelFrontend(FrontendParams())
    pool = Pool(args.seed, max(args.pool, args.batch), frontend, tokenizer, args.cut)
    prototypes = torch.nn.Parameter(torch.randn(len(world.CLASSES), model.config.projection_dim))
    optimizer = torch.optim.AdamW([*model.parameters(), prototypes], lr=args.lr, weight_decay=0.01)
    warmup = max(1, args.steps // 20)
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: min(1.0, (s + 1) / warmup) * 0.5 * (1 + np.cos(np.pi * min(s / args.steps, 1.0))))
    text_optimizer = torch.optim.AdamW([*model.text_model.parameters(), *model.text_projection.parameters(),
                                        prototypes], lr=args.lr)
    warm_text(model, tokenizer, prototypes, text_optimizer, np.random.default_rng(args.seed + 1), args.text_steps,
              args.batch)
    bar = tqdm(range(args.steps), desc="training", unit="step", file=sys.stderr)
    for step in bar:
        if args.eval_every and step % args.eval_every == 0:
            print(f"step {step}: held-out top-1 (torch) {held_out_accuracy(model, tokenizer, frontend):.3f}",
                  file=sys.stderr, flush=True)
        feats, text, same, classes = pool.batch(args.batch, args.refresh)
        out = model(input_ids=text["input_ids"], attention_mask=text["attention_mask"], input_features=feats)
        loss = anchored_loss(out, same, classes, prototypes)
        optimizer.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 5.0)
        optimizer.step()
        schedule.step()
        with torch.no_grad():
            model.logit_scale_a.clamp_(0, np.log(100))
            model.logit_scale_t.clamp_(0, np.log(100))
        bar.set_postfix(loss=f"{loss.item():.3f}")
    train_s = time.time() - started
    accuracy = held_out_accuracy(model, tokenizer, frontend)
    model.eval()
    args.out.mkdir(parents=True, exist_ok=True)
    ClapProcessor(feature_extractor=checkpoint_feature_extractor(), tokenizer=tokenizer).save_pretrained(args.out)
    model.save_pretrained(args.out)
    record = {"command": "python -m mini.train " + shlex.join(argv if argv is not None else sys.argv[1:]),
              "seed": args.seed, "steps": args.steps, "batch": args.batch, "pool": args.pool,
              "refresh": args.refresh, "lr": args.lr, "cut": args.cut, "text_steps": args.text_steps, "train_seconds": round(train_s, 1),
              "cpu": CpuInfo.read().model, "torch_threads": args.threads, "torch": torch.__version__,
              "held_out_top1_torch": round(accuracy, 4), "classes": world.CLASSES, "held_out_class": world.HELD_OUT}
    (args.out / "training.json").write_text(json.dumps(record, indent=1) + "\n")
    print(f"trained in {train_s:.0f} s; held-out zero-shot top-1 (torch) {accuracy:.3f}; saved to {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
