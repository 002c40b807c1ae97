//! The PostgreSQL schema: numbered migrations, applied in order under an
//! advisory lock (several daemons starting at once migrate once) and
//! tracked in `plexus_schema`. Append only: a released migration never
//! changes. The tables are SQLite's (see `store::schema`), with the columns
//! several daemons on one database need.

/// The advisory lock key taken while migrating (`pg_advisory_xact_lock`).
pub(super) const MIGRATION_LOCK: i64 = 0x706c_6578_7573_0001;

pub(super) const MIGRATIONS: &[&str] = &[
    // 1: the schema of SQLite's seven migrations, and the cluster's tables.
    "CREATE TABLE workflows (
        id TEXT NOT NULL,
        version BIGINT NOT NULL,
        source TEXT NOT NULL,
        format TEXT NOT NULL,
        created_at_ms BIGINT NOT NULL,
        deleted BOOLEAN NOT NULL DEFAULT false,
        PRIMARY KEY (id, version)
    );
    CREATE TABLE executions (
        id TEXT PRIMARY KEY,
        workflow_id TEXT NOT NULL,
        workflow_version BIGINT NOT NULL,
        status TEXT NOT NULL,
        inputs TEXT NOT NULL,
        outputs TEXT NOT NULL DEFAULT '{}',
        error TEXT,
        state TEXT NOT NULL DEFAULT '{}',
        schedule_id TEXT,
        scheduled_at_ms BIGINT,
        created_at_ms BIGINT NOT NULL,
        started_at_ms BIGINT,
        ended_at_ms BIGINT,
        runs BIGINT NOT NULL DEFAULT 1,
        transaction_id TEXT,
        priority BIGINT NOT NULL DEFAULT 1,
        -- The last event's number: events are numbered per execution, in
        -- commit order (the row lock of this update orders them).
        last_event BIGINT NOT NULL DEFAULT 0,
        -- The node running it (NULL: unclaimed), the plugins it needs, and
        -- whether a cancel was asked for on another node.
        owner TEXT,
        needs TEXT[] NOT NULL DEFAULT '{}',
        cancel_requested BOOLEAN NOT NULL DEFAULT false
    );
    CREATE INDEX executions_by_status ON executions (status);
    CREATE INDEX executions_by_workflow ON executions (workflow_id);
    CREATE INDEX executions_by_end ON executions (ended_at_ms);
    CREATE INDEX executions_by_transaction ON executions (transaction_id) WHERE transaction_id IS NOT NULL;
    CREATE INDEX executions_unfinished ON executions (priority DESC, created_at_ms, id)
        WHERE status IN ('pending', 'running', 'rolling_back');
    CREATE INDEX executions_by_owner ON executions (owner) WHERE owner IS NOT NULL;
    CREATE TABLE steps (
        execution_id TEXT NOT NULL,
        idx BIGINT NOT NULL,
        record TEXT NOT NULL,
        PRIMARY KEY (execution_id, idx)
    );
    CREATE TABLE events (
        execution_id TEXT NOT NULL,
        seq BIGINT NOT NULL,
        at_ms BIGINT NOT NULL,
        step_id TEXT,
        attempt BIGINT,
        status TEXT NOT NULL,
        message TEXT,
        PRIMARY KEY (execution_id, seq)
    );
    CREATE TABLE compensations (
        execution_id TEXT NOT NULL,
        seq BIGINT NOT NULL,
        record TEXT NOT NULL,
        PRIMARY KEY (execution_id, seq)
    );
    CREATE TABLE state_entries (
        execution_id TEXT NOT NULL,
        key TEXT NOT NULL,
        value TEXT,
        from_step BIGINT,
        PRIMARY KEY (execution_id, key),
        CHECK ((value IS NULL) <> (from_step IS NULL))
    );
    CREATE TABLE schedules (
        id TEXT PRIMARY KEY,
        spec TEXT NOT NULL,
        enabled BOOLEAN NOT NULL DEFAULT true,
        created_at_ms BIGINT NOT NULL,
        last_fire_ms BIGINT
    );
    CREATE TABLE fires (
        seq BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        schedule_id TEXT NOT NULL,
        fire_time_ms BIGINT NOT NULL,
        fired_at_ms BIGINT NOT NULL,
        outcome TEXT NOT NULL,
        execution_id TEXT,
        message TEXT
    );
    CREATE INDEX fires_by_schedule ON fires (schedule_id, seq);
    CREATE TABLE transactions (
        id TEXT PRIMARY KEY,
        state TEXT NOT NULL,
        created_at_ms BIGINT NOT NULL,
        ended_at_ms BIGINT,
        compensations TEXT NOT NULL DEFAULT '[]'
    );
    CREATE TABLE templates (
        id TEXT PRIMARY KEY,
        source TEXT NOT NULL,
        updated_at_ms BIGINT NOT NULL
    );
    CREATE TABLE nodes (
        id TEXT PRIMARY KEY,
        address TEXT,
        started_at_ms BIGINT NOT NULL,
        heartbeat_ms BIGINT NOT NULL,
        lease_until_ms BIGINT NOT NULL,
        plugins TEXT[] NOT NULL DEFAULT '{}',
        workers BIGINT NOT NULL,
        running BIGINT NOT NULL DEFAULT 0,
        stopped BOOLEAN NOT NULL DEFAULT false
    );
    CREATE TABLE leaders (
        name TEXT PRIMARY KEY,
        node TEXT NOT NULL,
        lease_until_ms BIGINT NOT NULL
    );",
    // 2: the node rolling a transaction back (another takes over when it dies).
    "ALTER TABLE transactions ADD COLUMN owner TEXT;",
    // 3: secrets, sealed (ChaCha20-Poly1305; see `crate::secrets`), never stored in clear.
    "CREATE TABLE secrets (
        name TEXT PRIMARY KEY,
        sealed BYTEA NOT NULL,
        key_id TEXT NOT NULL,
        updated_at_ms BIGINT NOT NULL
    );",
    // 4: webhook triggers and the deliveries they accepted.
    "CREATE TABLE hooks (
        id TEXT PRIMARY KEY,
        spec TEXT NOT NULL,
        sealed BYTEA NOT NULL,
        key_id TEXT NOT NULL,
        created_at_ms BIGINT NOT NULL
    );
    CREATE TABLE hook_deliveries (
        hook_id TEXT NOT NULL,
        delivery TEXT NOT NULL,
        received_at_ms BIGINT NOT NULL,
        execution_id TEXT,
        PRIMARY KEY (hook_id, delivery)
    );
    CREATE INDEX hook_deliveries_by_time ON hook_deliveries (hook_id, received_at_ms);",
    // 5: the items of map steps (`for_each`), a record each.
    "CREATE TABLE step_items (
        execution_id TEXT NOT NULL,
        step_index BIGINT NOT NULL,
        item_index BIGINT NOT NULL,
        status TEXT NOT NULL,
        record TEXT NOT NULL,
        PRIMARY KEY (execution_id, step_index, item_index)
    );",
    // 6: signals delivered to executions, the first of a name kept.
    "CREATE TABLE signals (
        execution_id TEXT NOT NULL,
        name TEXT NOT NULL,
        record TEXT NOT NULL,
        at_ms BIGINT NOT NULL,
        PRIMARY KEY (execution_id, name)
    );
    CREATE INDEX signals_by_time ON signals (at_ms);",
    // 7: which execution holds which artifact (the bytes are in the artifact store).
    "CREATE TABLE artifacts (
        execution_id TEXT NOT NULL,
        digest TEXT NOT NULL,
        name TEXT NOT NULL,
        step_id TEXT NOT NULL,
        bytes BIGINT NOT NULL,
        media_type TEXT,
        created_at_ms BIGINT NOT NULL,
        PRIMARY KEY (execution_id, step_id, name, digest)
    );
    CREATE INDEX artifacts_by_digest ON artifacts (digest);",
];
