"""Entry point of rule fit_projections: projection shares at one K (a wildcard) for every basis."""
import numpy as np

from corpus_weights.measure.analysis import projection_table
from corpus_weights.core.ids import Basis, Pooled, Target
from corpus_weights.core.workflow_io import load_weights_npz, start_log

log = start_log(snakemake.log[0])
params = snakemake.params.projection
K = int(snakemake.wildcards.K)
weights, _ = load_weights_npz(snakemake.input.weights)
init, _ = load_weights_npz(snakemake.input.init)
alignment = np.load(snakemake.input.alignment)
cov = np.load(snakemake.input.covariance)
table = projection_table(weights, init, alignment["basis"], alignment["null_bases"], cov["eigvecs"], cov["mu"],
                         np.load(snakemake.input.embeddings)["pi"], K, int(params["random_draws"]),
                         int(params["seed"]), split_bases=alignment["split_bases"],
                         min_effect=float(params["min_effect"]))
table.to_parquet(snakemake.output.table, index=False)
log.info("K=%d: %d rows", K, len(table))
headline = table[(table.basis == Basis.CORPUS_ALIGNED) & (table.target == Target.W)
                 & (table.matrix == Pooled.NONEMBED)].iloc[0]
log.info("pooled aligned share %.4f, split sd %.4f, total sd %.4f, z_total %.2f, planted z at %.3f: %.2f, mde %s",
         headline.share, headline.share_splits_sd, headline.share_total_sd, headline.z_total, headline.planted_delta,
         headline.planted_z, headline.mde)
