"""upcycle/measure.py's shipped-graph result and how the card shows it: a result is taken
only on the reference's FIM cases, and paired counts appear only when they were measured."""
import json
import os
import sys

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "upcycle"))
import card  # noqa: E402
import measure  # noqa: E402
from routing_file import chosen_point  # noqa: E402

G = card.SHIPPED_GRAPH   # the recipe the results below were measured on: this build's


def report(tmp_path, name: str, seed: int, right: list[bool]) -> str:
    """An evaluate.py report (the fields measure.py reads) with one FIM case per flag."""
    base = str(tmp_path / f"{name}-{seed}")
    settings = {"seed": seed, "fim_cases": len(right)}
    json.dump({"settings": settings, "models": {name: {}}}, open(base + ".json", "w"))
    with open(base + ".fim.jsonl", "w") as f:
        for i, ok in enumerate(right):
            f.write(json.dumps({"id": i, "language": "python", "middle": "x = 1",
                                "completions": {name: "x = 1" if ok else "y"}}) + "\n")
    return base


def test_shipped_result_pools_the_seeds_and_pairs_with_the_reference(tmp_path):
    reps = [report(tmp_path, "shipped", 1234, [True, False, True]), report(tmp_path, "shipped", 4321, [False, True])]
    out = measure.shipped_summary(reps, [1234, 4321], [True, True, False, False, False])
    assert out["fim_n"] == 5 and out["fim_exact"] == pytest.approx(0.6)
    assert (out["only_shipped_exact"], out["only_reference_exact"]) == (2, 1)
    alone = measure.shipped_summary(reps, [1234, 4321], None)
    assert alone["fim_exact"] == out["fim_exact"] and "only_shipped_exact" not in alone


def test_shipped_result_on_other_cases_is_refused(tmp_path):
    reps = [report(tmp_path, "shipped", 1234, [True, False])]
    with pytest.raises(SystemExit, match="not on the upcycled reports' FIM cases"):
        measure.shipped_summary(reps, [4321], None)
    with pytest.raises(SystemExit):
        measure.shipped_summary(reps, [1234], [True, False, True])


def test_card_shows_paired_counts_only_when_measured():
    manifest = {"display_name": "m", "description": "d", "graph": {"weights_dtype": "int4-ffn-in-deep"}, "fim": {"order": "spm"},
                "architecture": {"d_model": 8, "n_layer": 2, "d_ff": 16, "n_head": 2, "vocab_size": 10,
                                 "parameters": 1, "context_length": 8}}
    shipped = {"graph": G, "fim_exact": 0.119, "fim_exact_ci95": [0.1, 0.14], "fim_n": 1000}
    routing = json.load(open(os.path.join(os.path.dirname(HERE), "upcycle", "routing.json")))
    models = {"upcycled": {"fim_exact": 0.127}}
    here = routing["sha256"]
    text = card.render(manifest, "dense", routing, {"models": models, "shipped": shipped, "routing_sha256": here})
    assert "blocks 6-23 in 4 bits" in text and "Prompts in SPM order" in text
    up = card.render(manifest, "upcycled", routing, {"models": models, "shipped": shipped, "routing_sha256": here})
    assert "scores 11.9% [10.0%, 14.0%] on the same 1,000 FIM cases." in up
    paired = card.render(manifest, "upcycled", routing, {"models": models, "routing_sha256": here,
                                                         "shipped": {**shipped, "only_shipped_exact": 3, "only_reference_exact": 11}})
    assert "(3 right only here, 11 only in the row above)" in paired


def test_shipped_result_records_the_prompt_order_and_refuses_to_pool_two(tmp_path):
    def ordered(name, seed, order):
        base = report(tmp_path, name, seed, [True])
        rep = json.load(open(base + ".json"))
        rep["models"][name] = {"fim": {"overall": {"fim_order": order}}}
        json.dump(rep, open(base + ".json", "w"))
        return base
    spm = [ordered("a", 1234, "spm"), ordered("a", 4321, "spm")]
    assert measure.shipped_summary(spm, [1234, 4321], None)["fim_order"] == "spm"
    # Reports from before evaluate.py recorded the order were PSM.
    assert measure.shipped_summary([report(tmp_path, "old", 1234, [True])], [1234], None)["fim_order"] == "psm"
    with pytest.raises(SystemExit, match="different prompt orders"):
        measure.shipped_summary([ordered("b", 1234, "spm"), ordered("b", 4321, "psm")], [1234, 4321], None)


def test_card_shows_the_order_and_the_dense_folder_beside_the_upcycled_one():
    manifest = {"display_name": "m", "description": "d", "graph": {"weights_dtype": "int4-ffn-in-deep"}, "fim": {"order": "spm"},
                "architecture": {"d_model": 8, "n_layer": 2, "d_ff": 16, "n_head": 2, "vocab_size": 10,
                                 "parameters": 1, "context_length": 8}}
    routing = json.load(open(os.path.join(os.path.dirname(HERE), "upcycle", "routing.json")))
    shipped = {"graph": G, "fim_exact": 0.26, "fim_exact_ci95": [0.23, 0.29], "fim_n": 1000, "fim_order": "spm",
               "paired_with_dense": {"only_upcycled_exact": 30, "only_dense_exact": 20, "both_exact": 230}}
    dense = {"graph": G, "fim_exact": 0.25, "fim_exact_ci95": [0.22, 0.28], "fim_n": 1000, "fim_order": "spm"}
    results = {"models": {"upcycled": {"fim_exact": 0.127}}, "shipped": shipped, "shipped_dense": dense,
               "routing_sha256": routing["sha256"]}
    up = card.render(manifest, "upcycled", routing, results)
    assert "scores 26.0% [23.0%, 29.0%] on the same 1,000 FIM cases, with prompts in SPM order (the table: PSM)." in up
    assert "scores 25.0%: 30 cases right only here, 20 only there (ratio 1.04)." in up
    down = card.render(manifest, "dense", routing, results)
    assert "scores 25.0% [22.0%, 28.0%]" in down and "right only here" not in down


def engine_report(tmp_path, name: str, seed: int, right: list[bool], prompt_tokens: int = 1024, routing=None) -> str:
    """An eval_engine.py report (the fields measure.py reads) with one FIM case per flag."""
    base = str(tmp_path / f"engine-{name}-{seed}")
    json.dump({"seed": seed, "fim_cases": len(right), "prompt_tokens": prompt_tokens, "max_new_tokens": 48,
               **({"folder": {"routing_sha256": routing}} if routing else {})}, open(base + ".json", "w"))
    with open(base + ".fim.jsonl", "w") as f:
        for i, ok in enumerate(right):
            f.write(json.dumps({"id": i, "middle": "  x = 1", "completion": "x = 1\ny = 2" if ok else "y"}) + "\n")
    return base


def test_engine_result_pools_seeds_pairs_cases_and_shows_only_for_its_routing(tmp_path):
    up = [engine_report(tmp_path, "up", 1234, [True, True, False]), engine_report(tmp_path, "up", 4321, [True, False])]
    de = [engine_report(tmp_path, "de", 1234, [True, False, True]), engine_report(tmp_path, "de", 4321, [False, False])]
    e = measure.engine_summary(up, de, "abc")
    assert (e["fim_n"], e["upcycled"]["exact"], e["dense"]["exact"]) == (5, 3, 2)
    assert e["paired"] == {"only_upcycled_exact": 2, "only_dense_exact": 1, "both_exact": 1}
    manifest = {"display_name": "m", "description": "d", "graph": {"weights_dtype": "int8"}, "fim": {"order": "spm"},
                "architecture": {"d_model": 8, "n_layer": 2, "d_ff": 16, "n_head": 2, "vocab_size": 10,
                                 "parameters": 1, "context_length": 8}}
    routing = json.load(open(os.path.join(os.path.dirname(HERE), "upcycle", "routing.json")))
    results = {"models": {"upcycled": {"fim_exact": 0.1}}, "engine": {**e, "machine": "m1", "routing_sha256": routing["sha256"], "graph": G}}
    text = card.render(manifest, "upcycled", routing, results)
    assert "gets 3/5 of the same kind" in text and "dense source's folder 2/5 (ratio 1.50; 2 right only here, 1 only there)" in text
    assert "upcycled folder 3/5 (1 right only here, 2 only there)" in card.render(manifest, "dense", routing, results)
    other = {**results, "engine": {**results["engine"], "routing_sha256": "another routing"}}
    assert "As users get it" not in card.render(manifest, "upcycled", routing, other)


def test_engine_results_on_other_cases_or_budgets_are_refused(tmp_path):
    up = [engine_report(tmp_path, "up", 1234, [True, False])]
    with pytest.raises(SystemExit, match="not on the same cases"):
        measure.engine_summary(up, [engine_report(tmp_path, "de", 4321, [True, False])], "abc")
    with pytest.raises(SystemExit, match="not on the same cases"):
        measure.engine_summary(up, [engine_report(tmp_path, "de2", 1234, [True, False], prompt_tokens=333)], "abc")


def test_engine_result_is_keyed_to_the_routing_its_folder_was_built_with(tmp_path):
    de = [engine_report(tmp_path, "de", 1234, [True]), engine_report(tmp_path, "de", 4321, [True])]
    up = [engine_report(tmp_path, "up", 1234, [True], routing="built"), engine_report(tmp_path, "up", 4321, [False], routing="built")]
    assert measure.engine_summary(up, de, "current file")["routing_sha256"] == "built"
    mixed = [engine_report(tmp_path, "mx", 1234, [True], routing="one"), engine_report(tmp_path, "mx", 4321, [True], routing="two")]
    with pytest.raises(SystemExit, match="different routing files"):
        measure.engine_summary(mixed, de, "current file")


def test_measurements_of_another_routing_are_labelled_or_left_out_never_shown_as_this_folders():
    manifest = {"display_name": "m", "description": "d", "graph": {"weights_dtype": "int8"}, "fim": {"order": "spm"},
                "architecture": {"d_model": 8, "n_layer": 2, "d_ff": 16, "n_head": 2, "vocab_size": 10,
                                 "parameters": 1, "context_length": 8}}
    routing = json.load(open(os.path.join(os.path.dirname(HERE), "upcycle", "routing.json")))
    models = {"dense": {"val_loss": 1.43, "fim_exact": 0.122, "compute_vs_dense": 1.0},
              "upcycled": {"val_loss": 1.44, "fim_exact": 0.127, "compute_vs_dense": 0.833}}
    shipped = {"graph": G, "fim_exact": 0.26, "fim_exact_ci95": [0.23, 0.29], "fim_n": 1000, "fim_order": "spm"}
    old = {"models": models, "shipped": shipped, "shipped_dense": shipped, "routing_sha256": "an earlier routing",
           "sections": {"upcycled": {"Examples": "EXAMPLES OF THE OLD ROUTING"}, "dense": {"Examples": "DENSE EXAMPLES"}},
           "sections_routing_sha256": "an earlier routing"}
    up = card.render(manifest, "upcycled", routing, old)
    assert "| upcycled, an earlier routing (0.833×) |" in up and "measured with an earlier routing file" in up
    assert "The graph in this folder" not in up and "EXAMPLES OF THE OLD ROUTING" not in up
    # The per-layer shares come from the routing file itself, so they always describe this folder.
    shares = chosen_point(routing)
    assert "| FFN work | " + " | ".join(f"{x:.0%}" for x in shares["ffn_share_per_layer"]) + " |" in up
    dense = card.render(manifest, "dense", routing, old)
    assert "The graph in this folder" in dense and "DENSE EXAMPLES" in dense
    # The model picker's numbers: none of the old routing's for the upcycled folder, this routing's compute.
    info = card.model_info("upcycled", routing, old)["metrics"]
    assert info == {"val_loss": None, "fim_exact": None, "compute_vs_dense": shares["compute_vs_dense"]}
    # The dense folder's own graph, measured on this recipe (shipped_dense), before the campaign's PSM figure.
    assert card.model_info("dense", routing, old)["metrics"]["fim_exact"] == 0.26
    assert card.model_info("dense", routing, {**old, "shipped_dense": None})["metrics"]["fim_exact"] == 0.122
    # With the engine measured on this routing, both folders show its FIM rate (like with like).
    engine = {"routing_sha256": routing["sha256"], "graph": G, "fim_n": 1000, "upcycled": {"exact": 294}, "dense": {"exact": 284}}
    assert card.model_info("upcycled", routing, {**old, "engine": engine})["metrics"]["fim_exact"] == 0.294
    assert card.model_info("dense", routing, {**old, "engine": engine})["metrics"]["fim_exact"] == 0.284


def test_a_shipped_result_keyed_to_its_routing_shows_only_for_that_routing():
    manifest = {"display_name": "m", "description": "d", "graph": {"weights_dtype": "int8"}, "fim": {"order": "spm"},
                "architecture": {"d_model": 8, "n_layer": 2, "d_ff": 16, "n_head": 2, "vocab_size": 10,
                                 "parameters": 1, "context_length": 8}}
    routing = json.load(open(os.path.join(os.path.dirname(HERE), "upcycle", "routing.json")))
    models = {"dense": {"fim_exact": 0.122}, "upcycled": {"fim_exact": 0.127, "compute_vs_dense": 0.833}}
    shipped = {"graph": G, "fim_exact": 0.258, "fim_exact_ci95": [0.23, 0.29], "fim_n": 1000, "fim_order": "spm"}
    old_campaign = {"models": models, "routing_sha256": "an earlier routing"}
    mine = card.render(manifest, "upcycled", routing, {**old_campaign, "shipped": {**shipped, "routing_sha256": routing["sha256"]}})
    assert f"The graph in this folder ({G}) scores 25.8%" in mine and "an earlier routing (0.833×)" in mine
    other = card.render(manifest, "upcycled", routing, {**old_campaign, "shipped": {**shipped, "routing_sha256": "another"}})
    assert "The graph in this folder" not in other
    unkeyed = card.render(manifest, "upcycled", routing, {**old_campaign, "shipped": shipped})
    assert "The graph in this folder" not in unkeyed     # it belongs to the earlier campaign


def test_a_trained_routing_card_shows_the_trained_point_and_where_it_started():
    manifest = {"display_name": "m", "description": "d", "graph": {"weights_dtype": "int8"}, "fim": {"order": "spm"},
                "architecture": {"d_model": 8, "n_layer": 2, "d_ff": 16, "n_head": 2, "vocab_size": 10,
                                 "parameters": 1, "context_length": 8}}
    routing = json.load(open(os.path.join(os.path.dirname(HERE), "upcycle", "routing.json")))
    point = {"gate_thresholds": [0.1] * 24, "down_thresholds": [0.2] * 24, "delta_loss": 0.0146,
             "compute_vs_dense": 0.737, "ffn_share_per_layer": [0.55] * 24, "dense_val_loss": 1.691,
             "validation_tokens": 3078, "start_delta_loss": 0.0217, "start_compute_vs_dense": 0.735}
    trained = {**routing, "gate_skip": 0.2, "down_skip": 0.6, "sha256": "trained file",
               "trained": {"steps": 120, "train_tokens": 61440, "window": 512, "target_compute": 0.735,
                           "machine": "2-core test VM", "point": point}}
    up = card.render(manifest, "upcycled", trained, {})
    assert "| 0.2 / 0.6 (start of training) |" in up and "(shipped)" not in up
    assert "**+0.0146 nats at 0.737× FFN compute**" in up and "cost +0.0217 at 0.735×" in up
    assert "| FFN work | " + " | ".join(["55%"] * 24) + " |" in up
    info = card.model_info("upcycled", trained, {})
    assert info["metrics"]["compute_vs_dense"] == 0.737 and info["training"]["routing"]["trained_steps"] == 120


def test_reports_name_the_routing_and_the_folders_they_measured(tmp_path):
    def made(name, seed, routing, dtype="int4-ffn-in-deep", order="spm"):
        base = report(tmp_path, name, seed, [True])
        rep = json.load(open(base + ".json"))
        rep["models"][name] = {"source": {"weights_dtype": dtype, "fim_order": order},
                               "training": {"routing": {"routing_sha256": routing}}}
        json.dump(rep, open(base + ".json", "w"))
        return base
    both = [made("a", 1234, "r1"), made("a", 4321, "r1")]
    assert measure.report_routing(both) == "r1"
    assert measure.folders_text(both) == "ONNX model folders with int4-ffn-in-deep weights, prompted in SPM order"
    with pytest.raises(SystemExit, match="different routing files"):
        measure.report_routing([made("b", 1234, "r1"), made("b", 4321, "r2")])
    # Reports from before evaluate.py copied the manifest say nothing: no routing, a plain description.
    old = [report(tmp_path, "old", 1234, [True])]
    assert measure.report_routing(old) is None and measure.folders_text(old) == "ONNX model folders"
    assert measure.folders_text([made("c", 1234, "r1"), made("d", 1234, "r1", order="psm")]) == "ONNX model folders"


def test_reports_without_a_loss_give_none_not_a_crash(tmp_path):
    base = report(tmp_path, "d", 1234, [True, False])
    rep = json.load(open(base + ".json"))
    rep["settings"]["loss_tokens_per_language"] = 0
    rep["models"]["d"] = {"kind": "dense", "routing": {"compute_vs_dense": 1.0}, "seconds_fim": 1.0}
    json.dump(rep, open(base + ".json", "w"))
    out, exact = measure.summarize([base])
    assert out["val_loss"] is None and out["val_loss_by_lang"] == {} and exact == [True, False]


def test_the_depth_section_quotes_the_loop_report_and_says_when_there_is_none():
    row = lambda d, c, s: {"delta_vs_dense": d, "compute_vs_dense": c, "loop_share": s,  # noqa: E731
                           "loop_share_per_layer": [s] * 2}
    loops = {"steps": 60, "train_tokens": 30720, "seconds": 1720, "machine": "2-core test VM",
             "validation": {"tokens": 3078, "width_only": row(0.0038, 0.833, 0.0), "hard": row(-0.0091, 1.037, 0.6),
                            "all": row(0.018, 1.834, 1.0)}}
    text = "\n".join(card.depth_lines(loops))
    assert "**-0.0091 nats at 1.037× FFN compute**" in text and "layers 0, 1" in text and "width routing at 0.833×" in text
    assert "Not measured" in "\n".join(card.depth_lines(None))


def test_results_of_another_graph_recipe_are_not_shown_as_this_folders():
    """New weights with the same routing (int8 in blocks of 128 replaced blocks of 32): what was measured on
    the old recipe, or with no recipe recorded, is neither shown nor the model picker's FIM figure."""
    manifest = {"display_name": "m", "description": "d", "graph": {"weights_dtype": "int4-ffn-in-deep"}, "fim": {"order": "spm"},
                "architecture": {"d_model": 8, "n_layer": 2, "d_ff": 16, "n_head": 2, "vocab_size": 10,
                                 "parameters": 1, "context_length": 16}}
    routing = json.load(open(os.path.join(os.path.dirname(HERE), "upcycle", "routing.json")))
    engine = {"routing_sha256": routing["sha256"], "fim_n": 1000, "seeds": [1], "prompt_tokens": 1024, "machine": "m",
              "upcycled": {"exact": 294, "fim_exact_ci95": [0.2, 0.3]}, "dense": {"exact": 302, "fim_exact_ci95": [0.2, 0.3]},
              "paired": {"only_upcycled_exact": 1, "only_dense_exact": 2, "both_exact": 3}}
    shipped = {"fim_exact": 0.258, "fim_exact_ci95": [0.23, 0.29], "fim_n": 1000, "fim_order": "spm", "routing_sha256": routing["sha256"]}
    models = {"dense": {"fim_exact": 0.122}, "upcycled": {"fim_exact": 0.127, "compute_vs_dense": 0.737}}
    for graph in (None, "GPTQ int4 gate/up in blocks 6-23, int8 elsewhere"):
        old = {"models": models, "routing_sha256": "an earlier routing", "engine": {**engine, **({"graph": graph} if graph else {})},
               "shipped": {**shipped, **({"graph": graph} if graph else {})}, "shipped_dense": {**shipped, "graph": graph or ""}}
        for kind in ("upcycled", "dense"):
            text = card.render(manifest, kind, routing, old)
            assert "As users get it" not in text and "The graph in this folder" not in text
            # The upcycled folder has no figure of its own; the dense one falls back to the campaign's (PSM) row.
            assert card.model_info(kind, routing, old)["metrics"]["fim_exact"] == (None if kind == "upcycled" else 0.122)
    now = {"models": models, "routing_sha256": "an earlier routing", "engine": {**engine, "graph": G}, "shipped": {**shipped, "graph": G}}
    assert "As users get it" in card.render(manifest, "upcycled", routing, now)
    assert card.model_info("upcycled", routing, now)["metrics"]["fim_exact"] == 0.294
    alone = {"models": models, "routing_sha256": "an earlier routing", "shipped": {**shipped, "graph": G}}   # evaluate.py's result of this recipe when the engine's is another's
    assert card.model_info("upcycled", routing, alone)["metrics"]["fim_exact"] == 0.258
