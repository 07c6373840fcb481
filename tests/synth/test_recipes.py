"""Definition-aware generation, checked with a small independent matcher of recipes."""

from __future__ import annotations

import polars as pl
import pytest

from endpointc.synth import Alternative, Recipe, Rule, generate

H = ("INPAT", "OUTPAT")
PREV = 0.08
N = 1200

RECIPES = [
    Recipe("I9_MI", (Rule((Alternative(H, "10", code1="I21|I22"), Alternative(H, "9", code1="410"),
                           Alternative(H, "8", code1="410"), Alternative(("DEATH",), "10", code1="I21|I22"))),)),
    Recipe("C3_BREAST", (Rule((Alternative(("DEATH",), "10", code1="C50"),)),
                         Rule((Alternative(("REIMB",), code1="115"),)),
                         Rule((Alternative(("CANC",), code1="C50", code3="3"),))), sex="female"),
    Recipe("DM2_NOT_E119", (Rule((Alternative(H, "10", code1="E11", exclude=(("CODE1", "E119"),)),)),
                            Rule((Alternative(("PURCH",), code1="A10B"),), min_events=3))),
    Recipe("T2D_EARLY", (Rule((Alternative(H, "10", code1="E11"),)),), age=(None, 40)),
    Recipe("CROHN_DRUG", (Rule((Alternative(H, "10", code1="K50", category="0"),)),
                          Rule((Alternative(("PURCH",), code1="A07EC"),), needs_other=True))),
    Recipe("COPD_DEATH_MAIN", (Rule((Alternative(("DEATH",), "10", code1="J44", category="U"),)),)),
    Recipe("PCI_EMERGENCY", (Rule((Alternative(("OPER_IN", "OPER_OUT"), code1="FNG", category="NOM"),)),),
           emergency=True),
    Recipe("PRIM_DM2", (Rule((Alternative(("PRIM_OUT",), code1="T90", category="ICP"),)),)),
    Recipe("PREECLAMPSIA", (Rule((Alternative(H, "10", code1="O1[0-6]"),)),), sex="female"),
    Recipe("OLD_MI_80S", (Rule((Alternative(H, "8", code1="410"),)),), year=(1980, 1986)),
    Recipe("MI_AND_CANCER", (Rule((Alternative(("CANC",), code1="C34", code3="3"),)),), also=("I9_MI",)),
    Recipe("ONLY_WITH_ATC", (Rule((Alternative(H, "10", code1="T4", code3="."),)),)),
]


@pytest.fixture(scope="module")
def data():
    events, people = generate(people=N, seed=21, definitions=RECIPES, prevalence=PREV)
    events = events.collect().with_columns(
        (pl.col("CODE9") == "1").fill_null(False).any().over("FINNGENID", "INDEX").alias("URGENT"))
    return events, people.collect()


def _rx(col: str, regex: str) -> pl.Expr:
    return pl.col(col).fill_null("").str.contains(f"^(?:{regex})") & pl.col(col).is_not_null()


def _alt_filter(alt: Alternative) -> pl.Expr:
    cond = pl.col("SOURCE").is_in(list(alt.sources))
    if alt.icdver is not None:
        cond &= pl.col("ICDVER") == alt.icdver
    for col, rx in (("CODE1", alt.code1), ("CODE2", alt.code2), ("CODE3", alt.code3), ("CATEGORY", alt.category)):
        if rx is not None:
            cond &= _rx(col, rx)
    for col, rx in alt.exclude:
        cond &= ~_rx(col, rx)
    return cond


def cases(events: pl.DataFrame, people: pl.DataFrame, recipe: Recipe) -> set[str]:
    """Independent reading of a recipe's meaning (docs/language.md, evaluation steps 1-4)."""
    ev = events
    filt = pl.lit(True)
    lo, hi = recipe.age
    if lo is not None:
        filt &= pl.col("EVENT_AGE") >= lo
    if hi is not None:
        filt &= pl.col("EVENT_AGE") < hi
    ylo, yhi = recipe.year
    if ylo is not None:
        filt &= pl.col("APPROX_EVENT_DAY").dt.year() >= ylo
    if yhi is not None:
        filt &= pl.col("APPROX_EVENT_DAY").dt.year() <= yhi
    if recipe.emergency:
        filt &= pl.col("URGENT")
    kept: list[tuple[Rule, set[str]]] = []
    for rule in recipe.rules:
        sel = pl.lit(False)
        for alt in rule.alternatives:
            sel |= _alt_filter(alt)
        counts = ev.filter(sel & filt).group_by("FINNGENID").len()
        kept.append((rule, set(counts.filter(pl.col("len") >= rule.min_events)["FINNGENID"])))
    out: set[str] = set()
    for i, (rule, who) in enumerate(kept):
        if rule.needs_other:
            others = set().union(*[w for j, (_, w) in enumerate(kept) if j != i])
            who = who & others
        out |= who
    if recipe.sex:
        allowed = set(people.filter(pl.col("SEX") == recipe.sex)["FINNGENID"])
        out &= allowed
    return out


@pytest.mark.parametrize("recipe", RECIPES, ids=lambda r: r.endpoint)
def test_every_recipe_gets_cases(data, recipe):
    events, people = data
    got = cases(events, people, recipe)
    eligible = people
    if recipe.sex:
        eligible = eligible.filter(pl.col("SEX") == recipe.sex)
    if recipe.endpoint == "COPD_DEATH_MAIN":
        eligible = eligible.filter(pl.col("DEATH") == 1)
    assert len(got) >= 0.5 * PREV * eligible.height, (recipe.endpoint, len(got), eligible.height)


def test_generated_codes_stay_in_their_era(data):
    events, _ = data
    year = pl.col("APPROX_EVENT_DAY").dt.year()
    icd = events.filter(pl.col("SOURCE").is_in(["INPAT", "OUTPAT", "DEATH"]))
    assert icd.filter((pl.col("ICDVER") == "10") & (year < 1996)).height == 0
    assert icd.filter((pl.col("ICDVER") == "8") & (year > 1986)).height == 0
    assert events.filter((pl.col("SOURCE") == "PRIM_OUT") & (year < 2011)).height == 0


def test_except_codes_appear_but_do_not_count(data):
    events, people = data
    excluded = events.filter(pl.col("SOURCE").is_in(H), pl.col("CODE1").str.starts_with("E119"))
    assert excluded.height > 0
    recipe = RECIPES[2]
    only_excluded = recipe.rules[0].alternatives[0]
    no_exclude = Alternative(H, "10", code1="E11")
    with_excluded = events.filter(_alt_filter(no_exclude)).select("FINNGENID").unique()
    without = events.filter(_alt_filter(only_excluded)).select("FINNGENID").unique()
    # Some people have E11 rows that are all E119: they are not cases through this rule.
    assert with_excluded.height > without.height


def test_min_events_near_misses_exist(data):
    events, _ = data
    purch = events.filter(pl.col("SOURCE") == "PURCH", pl.col("CODE1").str.starts_with("A10B"))
    per = purch.group_by("FINNGENID").len()
    assert per.filter(pl.col("len") >= 3).height > 0
    assert per.filter(pl.col("len") == 2).height > 0


def test_needs_other_alone_does_not_count(data):
    events, people = data
    recipe = RECIPES[4]
    drug_only = set(events.filter(_alt_filter(recipe.rules[1].alternatives[0]))["FINNGENID"])
    diag = set(events.filter(_alt_filter(recipe.rules[0].alternatives[0]))["FINNGENID"])
    assert drug_only - diag, "expected people with only the needs-other drug"
    assert not (drug_only - diag) & cases(events, people, recipe)


def test_age_window(data):
    events, people = data
    recipe = RECIPES[3]
    got = cases(events, people, recipe)
    assert len(got) > 0
    early = events.filter(pl.col("FINNGENID").is_in(list(got)), _alt_filter(recipe.rules[0].alternatives[0]),
                          pl.col("EVENT_AGE") < 40)
    assert early["FINNGENID"].n_unique() == len(got)


def test_main_only_death_is_underlying(data):
    events, _ = data
    u = events.filter(pl.col("SOURCE") == "DEATH", pl.col("CODE1").str.starts_with("J44"), pl.col("CATEGORY") == "U")
    assert u.height > 0


def test_sex_of_recipe_respected(data):
    events, people = data
    males = set(people.filter(pl.col("SEX") == "male")["FINNGENID"])
    preg = events.filter(pl.col("CODE1").str.contains("^O1[0-6]"))
    assert preg.height > 0 and not set(preg["FINNGENID"]) & males


def test_also_makes_both_cases(data):
    events, people = data
    lung = cases(events, people, RECIPES[10])
    mi = cases(events, people, RECIPES[0])
    assert len(lung & mi) >= 0.5 * len(lung)


def test_structure_still_holds_with_recipes(data):
    events, _ = data
    hosp = events.filter(pl.col("SOURCE").is_in(H))
    mains = hosp.group_by("FINNGENID", "INDEX").agg((pl.col("CATEGORY") == "0").sum().alias("m"))
    assert (mains["m"] == 1).all()
    deaths = events.filter(pl.col("SOURCE") == "DEATH").group_by("FINNGENID").agg(
        (pl.col("CATEGORY") == "U").sum().alias("u"))
    assert (deaths["u"] == 1).all()


def test_recipes_do_not_change_background(data):
    events, people = data
    plain_e, plain_p = generate(people=N, seed=21)
    plain_e = plain_e.collect()
    assert plain_p.collect().equals(people)
    # Recipe rows only add visits (INDEX numbers shift) and may take over the role of a
    # death cause (CATEGORY U/I/c); every other background row is unchanged.
    events = events.drop("URGENT")
    cols = [c for c in plain_e.columns if c not in ("INDEX", "CATEGORY")]
    missing = plain_e.select(cols).join(events.select(cols), on=cols, how="anti", nulls_equal=True)
    assert missing.height == 0
    not_death = [c for c in plain_e.columns if c != "INDEX"]
    missing = (plain_e.filter(pl.col("SOURCE") != "DEATH").select(not_death)
               .join(events.select(not_death), on=not_death, how="anti", nulls_equal=True))
    assert missing.height == 0


def test_chunking_with_recipes(tmp_path):
    from polars.testing import assert_frame_equal

    from endpointc.synth import BLOCK_PEOPLE, write_registry
    n = BLOCK_PEOPLE + 10
    one = generate(people=n, seed=8, definitions=RECIPES[:3])[0].collect()
    out = write_registry(tmp_path, people=n, seed=8, definitions=RECIPES[:3], chunk_people=BLOCK_PEOPLE)
    assert_frame_equal(pl.read_parquet(out["events"]), one)


def test_bad_recipe_arguments():
    with pytest.raises(ValueError, match="unknown SOURCE"):
        Alternative(("HOSPITAL",), "10", code1="I21")
    with pytest.raises(ValueError, match="min_events"):
        Rule((Alternative(H, "10", code1="I21"),), min_events=0)
    with pytest.raises(ValueError, match="sex"):
        Recipe("X", (), sex="f")


def test_unreachable_recipe_is_reported():
    from endpointc.synth.generate import _build_model
    never = Recipe("NEVER", (Rule((Alternative(("OUTPAT",), "9", code1="410"),)),))  # no ICD-9 in OUTPAT
    m = _build_model([never], None, 0.1, 1)
    assert m.recipes.unreachable == ["NEVER"]
