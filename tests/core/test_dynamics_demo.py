"""Issue 7 on real checkpoints: a (tiny) demo suite trained by the platform gives cluster loss
curves that fall over training, and learned-at steps follow from them."""

import numpy as np
import pytest

STEPS = ("step0", "step1", "step2", "step4", "step8", "step16", "step32")


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    from quanta_core.corpus.canonical import build_canonical
    from quanta_core.corpus.minipile import minipile_documents
    from quanta_core.corpus.pile import read_pile, write_pile
    from quanta_core.corpus.tokenizer import load_tokenizer
    from quanta_core.models.checkpoints import load_checkpoint
    from quanta_core.models.demo_suite import DemoSuiteConfig, train_demo_suite
    from quanta_core.models.losses import token_losses

    root = tmp_path_factory.mktemp("demo")
    path = write_pile(root / "mini.jsonl.zst", minipile_documents(40)[:24])
    corpus = build_canonical(read_pile(path), load_tokenizer())
    config = DemoSuiteConfig(hidden_size=32, num_layers=1, num_heads=2, steps=STEPS, batch_tokens=512,
                             warmup_steps=2, learning_rate=1e-2, curve_every_nth_document=6,
                             stats_every_nth_document=6)
    train_demo_suite(corpus, root / "hub", config, seed=0)
    tables = {}
    for step in STEPS:
        model = load_checkpoint("quanta-demo", step, hub_cache_dir=root / "hub", device="cpu").model
        tables[step] = root / f"{step}.npy"
        np.save(tables[step], token_losses(model, corpus), allow_pickle=False)
    return corpus, tables


def test_demo_checkpoints_give_falling_cluster_curves(trained):
    from quanta_core.learning.dynamics import cluster_loss_curves, learned_at

    corpus, tables = trained
    final = np.load(tables[STEPS[-1]])
    indices = np.sort(np.argsort(final, kind="stable")[:240])  # the 240 best-predicted tokens at the end
    labels = (np.arange(len(indices)) * 5) // len(indices)  # five groups, in corpus order

    curves = cluster_loss_curves(indices, labels, tables)
    overall = curves.drop_duplicates("step").set_index("step")["overall_mean"]
    assert overall[STEPS[-1]] < overall["step0"] - 1.0  # the model learned something
    means = curves.pivot(index="step", columns="cluster", values="mean").loc[list(STEPS)]
    assert (means.loc[STEPS[-1]] < means.loc["step0"] - 2.0).all()  # every cluster's loss fell
    # naive check of the curves against the raw tables
    for step in STEPS:
        table = np.load(tables[step])
        for c in range(5):
            assert np.isclose(means.loc[step, c], table[indices[labels == c]].mean(), rtol=1e-5)

    threshold = float(means.loc["step0"].min()) - 1.0
    learned = learned_at(curves, threshold)
    steps = [int(s[4:]) for s in STEPS]
    for _, row in learned.iterrows():
        curve = means[row["cluster"]].to_numpy()
        below = curve < threshold
        expected = next((steps[i] for i in range(len(steps)) if below[i:].all()), None)
        step = row["learned_at_step"]
        got = None if step is None or step != step else int(step)  # None / NaN: never
        assert got == expected
    assert learned["learned_at_step"].notna().any()
