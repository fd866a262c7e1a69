"""What `vidcurate bench refinement` prints: per noise rate, the rows' accuracy, diversity and captions
changed, per attribute for round 0 and each round's student, how the round's selector treated the
student (with the round replayed at score margins), the training speed, and the issue's targets."""
from __future__ import annotations

from vidcurate.pipelines.bench.refinement import LOSSES
from vidcurate.pipelines.synth.probe import probe_table


def report(results: dict) -> str:
    start = (f"round 0: {results['teacher']}'s captions alone, rounds select with a fine-tuned retriever"
             if results.get("round0") == "teacher" else "round 0: consensus of six teachers, rounds select by consensus")
    start += ("; the student's frame encoder starts from that retriever's video tower"
              if results.get("student_init") == "retriever" else "; the student's frame encoder is that retriever's "
              "video tower, frozen" if results.get("student_init") == "retriever-frozen"
              else "; the student starts from scratch")
    folds = results.get("folds", 1)
    start += (f"; {folds}-fold cross-fitting (each clip captioned by the student that did not learn it)"
              if folds > 1 else "; one student learns and captions every clip")
    if results.get("contrastive"):
        start += f"; contrastive loss at weight {results['contrastive']:g} beside captioning"
    if results.get("min_margin"):
        start += f"; a student caption must win by a score margin of {results['min_margin']:g}"
    if results.get("rejudge"):
        start += ("; each round is also re-selected by its retriever fine-tuned further on the annotators' judgments "
                  "of the round's candidates (labelled clips)")
    if results.get("shift"):
        start += f"; training batches shifted by up to {results['shift']} px"
    if results.get("retriever_pooling", "attention") != "attention":
        start += f"; the world's retriever pools frames with {results['retriever_pooling']}"
    if results.get("retriever_spatial", "grid") != "grid":
        start += f"; the world's retriever pools each frame's features with {results['retriever_spatial']}"
    if results.get("retriever_shift"):
        start += f"; the rounds' retrievers trained on batches shifted by up to {results['retriever_shift']} px"
    if results.get("corrections"):
        start += "; each round's student is fine-tuned on the labelled clips' human corrections"
    lines = [f"Refinement on synthetic worlds of {results['clips']} clips (seed {results['seed']}), "
             f"{results['rounds']} round(s) of {results['epochs']} epochs, held-out clips only; {start}",
             "attribute accuracy / faithful share; diversity: distinct-1, distinct-2, vocabulary"]
    for noise, found in results["noises"].items():
        lines += ["", f"noise {float(noise):.0%} ({found['held_out_clips']} held-out clips)",
                  f"{'':46} {'selected':>16} {'student greedy':>16} {'student panda':>16} {'oracle pick':>16}   "
                  f"{'diversity (selected)':>22}  changed"]
        for name, row in found["rows"].items():
            cells = [_cell(row.get(k)) for k in ("selected", "student_greedy", "student_panda", "oracle")]
            sel = row["selected"]
            lines.append(f"{name:46} {cells[0]:>16} {cells[1]:>16} {cells[2]:>16} {cells[3]:>16}   "
                         f"{sel['distinct_1']:.3f} {sel['distinct_2']:.3f} {sel['vocabulary']:>5}  "
                         f"{row.get('changed', '')}")
        lines += attribute_lines(found["rows"])
        lines += selector_lines(found["rows"])
        lines += probe_table(found.get("probes") or {}, 46)
        steps = sum(row.get("steps", 0) for row in found["rows"].values())
        train = sum(row.get("train_seconds", 0.0) for row in found["rows"].values())
        if steps and train:
            lines.append(f"student training: {steps} steps in {train:.1f} s of the training loop, "
                         f"{steps / train:.2f} steps/s")
        lines += _targets(found["rows"], float(noise), max(float(n) for n in results["noises"]))
    return "\n".join(lines)


def attribute_lines(rows: dict) -> list[str]:
    """Per attribute, round 0's selected captions and each round's student (greedy): which attribute a
    student gets wrong, and whether it is the one round 0 gets wrong (colour, for colour_blind)."""
    name0, row0 = next((name, row) for name, row in rows.items() if row.get("round0"))
    if "attributes" not in row0["selected"]:  # a result written before the attributes were recorded
        return []
    names = list(row0["selected"]["attributes"])
    lines = ["attribute accuracy (held-out clips):", f"{'':46} " + " ".join(f"{a:>10}" for a in names)]
    picked = [(name0, row0["selected"])]
    picked += [(f"{name}: student greedy", row["student_greedy"]) for name, row in rows.items()
               if "student_greedy" in row]
    for name, scores in picked:
        lines.append(f"{name:46} " + " ".join(f"{scores['attributes'][a]:>10.1%}" for a in names))
    return lines


def _cell(scores: dict | None) -> str:
    return "" if not scores else f"{scores['accuracy']:.1%} / {scores['faithful']:.1%}"


def _targets(rows: dict, noise: float, highest: float) -> list[str]:
    start = round0_row(rows)["selected"]["accuracy"]
    last = {loss: [r for n, r in rows.items() if n.startswith(f"{loss}, round")][-1] for loss in LOSSES
            if any(n.startswith(f"{loss}, round") for n in rows)}
    out = ["targets:"]
    refined = list(last.values()) + [r for r in rows.values() if r.get("rejudged")]
    best = max(refined, key=lambda r: r["selected"]["accuracy"])
    out.append(f"  [{'met' if best['selected']['accuracy'] > start else 'MISSED'}] the flywheel raises selected "
               f"accuracy over round 0: best {best['selected']['accuracy']:.1%} vs {start:.1%}")
    if noise == highest and len(last) == 3:
        a, t, m = (last[k]["selected"]["accuracy"] for k in ("adatailr", "tailr", "mle"))
        out.append(f"  [{'met' if a >= t >= m else 'MISSED'}] AdaTaiLr >= TaiLr >= likelihood (selected): "
                   f"{a:.1%} / {t:.1%} / {m:.1%}")
        a, t, m = (last[k]["student_greedy"]["accuracy"] for k in ("adatailr", "tailr", "mle"))
        out.append(f"  [{'met' if a >= t >= m else 'MISSED'}] AdaTaiLr >= TaiLr >= likelihood (student greedy): "
                   f"{a:.1%} / {t:.1%} / {m:.1%}")
    base = round0_row(rows)["selected"]["distinct_2"]
    worst = min(r["selected"]["distinct_2"] for r in last.values())
    out.append(f"  diversity: distinct-2 of the selected captions {base:.3f} at round 0, lowest after refining "
               f"{worst:.3f} ({(worst - base) / base:+.1%})")
    return out


def round0_row(rows: dict) -> dict:
    return next(row for row in rows.values() if row.get("round0"))


def selector_lines(rows: dict) -> list[str]:
    lines = []
    for name, row in rows.items():
        found = row.get("selector")
        if not found:
            continue
        share = (lambda taken, of: f"{taken} of {of} ({taken / of:.0%})" if of else "0 of 0")
        lines.append(f"{name}: the selector took the student's caption where it was worse on "
                     f"{share(found['worse_taken'], found['worse'])}, where better on "
                     f"{share(found['better_taken'], found['better'])}; replayed with refine --min-margin: "
                     + ", ".join(f"{m}: {v['accuracy']:.1%} ({v['changed']} held-out captions changed)"
                                 for m, v in found["margins"].items()))
    return lines
