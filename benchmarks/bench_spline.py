"""Spline surface benchmark: whole-surface fit time of the arbitrage-free spline (``--model spline``) on a
large tight chain, and fit quality beside raw SVI on tight synthetic and real quotes, in one run.

    python benchmarks/bench_spline.py [--repeat 5] [--expiries 50] [--strikes 150] [--json FILE]

Markets:
* large: a tight Heston chain (shoals.data.synthetic.tight_heston_quotes) with ``--expiries`` expiries
  0.02 ... 3 y and ``--strikes`` strikes each from the 5-delta put to the 5-delta call (one out-of-the-money
  quote per strike after cleaning), bid/ask 0.05-0.1 vol points either side;
* tight: the 6-expiry Heston chain of tests/consistency/test_spline_surface.py;
* SPX 2011-01-24: the packaged chain (807 out-of-the-money quotes, 15 expiries).

Times: ``fit_spline_surface`` on the cleaned smiles (the model's own cost; no JIT is involved, so the
first run is not slower), median over ``--repeat`` runs, and one whole ``calibrate_surface`` (quotes ->
forwards -> smiles -> fit -> arbitrage check) per model.  Quality per model: share of quotes with a fitted
vol inside [bid, ask], RMSE against the mids in vol points, arbitrage check of the written surface.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from importlib.resources import files
from pathlib import Path

import numpy as np
from common import median_time

import shoals  # noqa: F401  (float64 before any array)
from shoals.calibration.spline import fit_spline_surface
from shoals.calibration.surface import calibrate_surface, overall_fit
from shoals.data.synthetic import tight_heston_quotes
from shoals.io.quotes import read_forwards, read_quotes


def calibrations(path, spot):
    """Quotes, cleaning report and forwards of a quote file, then both models' calibrations, timed."""
    table, cleaning = read_quotes(path, spot=spot)
    given = read_forwards(path, spot=spot)
    out = {}
    for model in ("svi", "spline"):
        started = time.perf_counter()
        result = calibrate_surface(table, cleaning, given_forwards=given, model=model)
        seconds = time.perf_counter() - started
        overall = overall_fit(result.smiles, result.fit_table())
        out[model] = {"result": result, "calibrate_s": seconds, **overall, "arbitrage_free": result.arbitrage.ok}
    return out


def describe(name, found):
    for model, row in found.items():
        print(f"{name:>8} {model:>6}: inside bid/ask {row['inside']:>5} of {row['quotes_with_ask']:>5} "
              f"({100 * row['inside_share']:5.1f} %), RMSE {row['rmse_vol_points']:.3f} vol pts, arbitrage-free "
              f"{row['arbitrage_free']}, calibrate_surface {row['calibrate_s']:.2f} s", flush=True)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--expiries", type=int, default=50)
    parser.add_argument("--strikes", type=int, default=150)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    report = {}
    with tempfile.TemporaryDirectory() as folder:
        started = time.perf_counter()
        large = Path(folder) / "large.csv"
        tight_heston_quotes(expiries=np.linspace(0.02, 3.0, args.expiries), n_strikes=args.strikes).to_csv(
            large, index=False)
        print(f"generated the {args.expiries} x {args.strikes} Heston chain in {time.perf_counter() - started:.1f} s",
              flush=True)
        tight = Path(folder) / "tight.csv"
        tight_heston_quotes().to_csv(tight, index=False)
        markets = {"large": (large, 100.0), "tight": (tight, 100.0),
                   "SPX": (files("shoals.data") / "spx_20110124_clean.csv", None)}
        for name, (path, spot) in markets.items():
            found = calibrations(path, spot)
            describe(name, found)
            smiles = found["spline"]["result"].smiles
            fit_s = median_time(lambda smiles=smiles: fit_spline_surface(smiles), args.repeat, warm_up=False)
            print(f"{name:>8} spline fit ({smiles.n_slices} expiries, {int(smiles.counts.sum())} quotes): "
                  f"median {fit_s:.2f} s over {args.repeat}", flush=True)
            report[name] = {"fit_s": fit_s, "expiries": smiles.n_slices, "quotes": int(smiles.counts.sum()),
                            **{model: {key: value for key, value in row.items() if key != "result"}
                               for model, row in found.items()}}
    if args.json:
        args.json.write_text(json.dumps(report, indent=1))
    big = report["large"]
    print(f"spline whole-surface fit {big['expiries']} expiries x {big['quotes'] // big['expiries']} quotes: "
          f"{big['fit_s']:.2f} s (goal <= 5 s); inside bid/ask {100 * big['spline']['inside_share']:.1f} % "
          f"(SVI {100 * big['svi']['inside_share']:.1f} %)")


if __name__ == "__main__":
    main()
