"""Entry point of rule fit_projections: projection shares at one K (a wildcard) for every basis."""
import numpy as np

from corpus_weights.analysis import projection_table
from corpus_weights.workflow_io import load_weights_npz, start_log

log = start_log(snakemake.log[0])
params = snakemake.params.projection
K = int(snakemake.wildcards.K)
weights, _ = load_weights_npz(snakemake.input.weights)
init, _ = load_weights_npz(snakemake.input.init)
alignment = np.load(snakemake.input.alignment)
cov = np.load(snakemake.input.covariance)
table = projection_table(weights, init, alignment["basis"], alignment["null_bases"], cov["eigvecs"], cov["mu"],
                         np.load(snakemake.input.embeddings)["pi"], K, int(params["random_draws"]),
                         int(params["seed"]))
table.to_parquet(snakemake.output.table, index=False)
log.info("K=%d: %d rows", K, len(table))
