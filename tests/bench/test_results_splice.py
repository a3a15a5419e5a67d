"""bench/results.py --only: the regenerated sections replace theirs in RESULTS.md, the rest stays."""
import importlib.util
import pathlib

_spec = importlib.util.spec_from_file_location(
    "bench_results", pathlib.Path(__file__).resolve().parents[2] / "bench" / "results.py")
results = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(results)

DOC = "# T\n\nintro\n\n## A\n\na1\n\n## B\n\nb1\nb2\n\n## C\n\nc\n"


def test_a_section_in_the_middle_is_replaced_and_the_others_kept():
    assert results.splice_sections(DOC, [("B", ["## B", "", "new b"])]) == \
        "# T\n\nintro\n\n## A\n\na1\n\n## B\n\nnew b\n\n## C\n\nc\n"


def test_last_and_first_sections_and_a_new_one():
    out = results.splice_sections(DOC, [("C", ["## C", "", "new c"]), ("D", ["## D", "", "d"])])
    assert out == "# T\n\nintro\n\n## A\n\na1\n\n## B\n\nb1\nb2\n\n## C\n\nnew c\n\n## D\n\nd\n"
    assert results.splice_sections("## A\n\nx\n\n## B\n\ny\n", [("A", ["## A", "", "new"])]) == \
        "## A\n\nnew\n\n## B\n\ny\n"


def test_a_title_that_is_a_prefix_of_another_is_not_confused():
    doc = "## Chaos runs and more\n\nx\n\n## Chaos runs\n\ny\n"
    assert results.splice_sections(doc, [("Chaos runs", ["## Chaos runs", "", "z"])]) == \
        "## Chaos runs and more\n\nx\n\n## Chaos runs\n\nz\n"
