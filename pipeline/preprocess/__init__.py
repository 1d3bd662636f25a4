"""Query preprocessing before distillation (`jobs.preprocess`): normalization, filters, exact and near
deduplication, and decontamination against evaluation benchmarks. Pure code: nothing here imports Ray."""
