-- Savings accounting, the learned engine's saved models, and risk history retention.

-- The decision pass deletes risk rows older than 30 days.
CREATE INDEX pool_risk_analysis_time ON pool_risk_analysis (analyzed_at);

-- Savings accounting, claimed like the pass.
INSERT INTO scheduled_jobs (name) VALUES ('decisions.savings');

-- Fitted models of the learned engine; the pass uses the newest, `spotguard-decisions train`
-- adds one. Parameters as the engine reads them, hold-out figures beside them.
CREATE TABLE decision_models (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    engine text NOT NULL CHECK (engine IN ('learned')),
    params jsonb NOT NULL CHECK (jsonb_typeof(params) = 'object'),
    samples integer NOT NULL CHECK (samples >= 0),
    positives integer NOT NULL CHECK (positives >= 0 AND positives <= samples),
    holdout_auc double precision CHECK (holdout_auc BETWEEN 0 AND 1),
    holdout_log_loss double precision CHECK (holdout_log_loss >= 0),
    holdout_base_log_loss double precision CHECK (holdout_base_log_loss >= 0),
    trained_from timestamptz,
    trained_to timestamptz,
    source text NOT NULL,
    trained_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX decision_models_latest ON decision_models (engine, id DESC);
