//! The schema: numbered migrations (`rusqlite_migration`, tracked in
//! `PRAGMA user_version`). Append only: a released migration never changes.

pub(super) const MIGRATIONS: &[&str] = &[
    // 1: the first schema.
    "CREATE TABLE workflows (
        id TEXT NOT NULL,
        version INTEGER NOT NULL,
        source TEXT NOT NULL,
        format TEXT NOT NULL,
        created_at_ms INTEGER NOT NULL,
        deleted INTEGER NOT NULL DEFAULT 0,
        PRIMARY KEY (id, version)
    );
    CREATE TABLE executions (
        id TEXT PRIMARY KEY,
        workflow_id TEXT NOT NULL,
        workflow_version INTEGER NOT NULL,
        status TEXT NOT NULL,
        inputs TEXT NOT NULL,
        outputs TEXT NOT NULL DEFAULT '{}',
        error TEXT,
        state TEXT NOT NULL DEFAULT '{}',
        schedule_id TEXT,
        scheduled_at_ms INTEGER,
        created_at_ms INTEGER NOT NULL,
        started_at_ms INTEGER,
        ended_at_ms INTEGER,
        runs INTEGER NOT NULL DEFAULT 1
    );
    CREATE INDEX executions_by_status ON executions (status);
    CREATE INDEX executions_by_workflow ON executions (workflow_id);
    CREATE TABLE steps (
        execution_id TEXT NOT NULL,
        idx INTEGER NOT NULL,
        record TEXT NOT NULL,
        PRIMARY KEY (execution_id, idx)
    ) WITHOUT ROWID;
    CREATE TABLE events (
        seq INTEGER PRIMARY KEY,
        execution_id TEXT NOT NULL,
        at_ms INTEGER NOT NULL,
        step_id TEXT,
        attempt INTEGER,
        status TEXT NOT NULL,
        message TEXT
    );
    CREATE INDEX events_by_execution ON events (execution_id, seq);
    CREATE TABLE compensations (
        execution_id TEXT NOT NULL,
        seq INTEGER NOT NULL,
        record TEXT NOT NULL,
        PRIMARY KEY (execution_id, seq)
    ) WITHOUT ROWID;
    CREATE TABLE schedules (
        id TEXT PRIMARY KEY,
        spec TEXT NOT NULL,
        enabled INTEGER NOT NULL DEFAULT 1,
        created_at_ms INTEGER NOT NULL,
        last_fire_ms INTEGER
    );
    CREATE TABLE fires (
        seq INTEGER PRIMARY KEY AUTOINCREMENT,
        schedule_id TEXT NOT NULL,
        fire_time_ms INTEGER NOT NULL,
        fired_at_ms INTEGER NOT NULL,
        outcome TEXT NOT NULL,
        execution_id TEXT,
        message TEXT
    );
    CREATE INDEX fires_by_schedule ON fires (schedule_id, seq);",
    // 2: retention finds ended executions by their end time.
    "CREATE INDEX executions_by_end ON executions (ended_at_ms);",
    // 3: the shared state's changes, a row per key: `executions.state` is the
    // state as of the execution's start (or its last snapshot), and these
    // rows, newer, overlay it. A step that adds a key writes that key alone.
    "CREATE TABLE state_entries (
        execution_id TEXT NOT NULL,
        key TEXT NOT NULL,
        value TEXT NOT NULL,
        PRIMARY KEY (execution_id, key)
    ) WITHOUT ROWID;",
    // 4: a step's output is stored once. A key a completed step's output set
    // (pipeline mode merges it into the state) refers to that output
    // (`from_step`, the step's index; `value` NULL) instead of a copy.
    "CREATE TABLE state_entries_v4 (
        execution_id TEXT NOT NULL,
        key TEXT NOT NULL,
        value TEXT,
        from_step INTEGER,
        PRIMARY KEY (execution_id, key),
        CHECK ((value IS NULL) <> (from_step IS NULL))
    ) WITHOUT ROWID;
    INSERT INTO state_entries_v4 (execution_id, key, value) SELECT execution_id, key, value FROM state_entries;
    DROP TABLE state_entries;
    ALTER TABLE state_entries_v4 RENAME TO state_entries;",
    // 5: transactions (QtForge's begin/commit/rollback_transaction) and the
    // executions that run in them.
    "ALTER TABLE executions ADD COLUMN transaction_id TEXT;
    CREATE INDEX executions_by_transaction ON executions (transaction_id) WHERE transaction_id IS NOT NULL;
    CREATE TABLE transactions (
        id TEXT PRIMARY KEY,
        state TEXT NOT NULL,
        created_at_ms INTEGER NOT NULL,
        ended_at_ms INTEGER,
        compensations TEXT NOT NULL DEFAULT '[]'
    );",
    // 6: workflow templates (the project orchestrator's register_template).
    "CREATE TABLE templates (
        id TEXT PRIMARY KEY,
        source TEXT NOT NULL,
        updated_at_ms INTEGER NOT NULL
    );",
    // 7: an execution's priority for a free worker: 0 low, 1 normal, 2 high, 3 critical.
    "ALTER TABLE executions ADD COLUMN priority INTEGER NOT NULL DEFAULT 1;",
    // 8: secrets, sealed (ChaCha20-Poly1305; see `crate::secrets`), never stored in clear.
    "CREATE TABLE secrets (
        name TEXT PRIMARY KEY,
        sealed BLOB NOT NULL,
        key_id TEXT NOT NULL,
        updated_at_ms INTEGER NOT NULL
    );",
    // 9: webhook triggers (their signing secrets sealed like secrets) and the
    // deliveries they accepted (a delivery id seen before is a replay).
    "CREATE TABLE hooks (
        id TEXT PRIMARY KEY,
        spec TEXT NOT NULL,
        sealed BLOB NOT NULL,
        key_id TEXT NOT NULL,
        created_at_ms INTEGER NOT NULL
    );
    CREATE TABLE hook_deliveries (
        hook_id TEXT NOT NULL,
        delivery TEXT NOT NULL,
        received_at_ms INTEGER NOT NULL,
        execution_id TEXT,
        PRIMARY KEY (hook_id, delivery)
    );
    CREATE INDEX hook_deliveries_by_time ON hook_deliveries (hook_id, received_at_ms);",
    // 10: the items of map steps (`for_each`), a record each.
    "CREATE TABLE step_items (
        execution_id TEXT NOT NULL,
        step_index INTEGER NOT NULL,
        item_index INTEGER NOT NULL,
        status TEXT NOT NULL,
        record TEXT NOT NULL,
        PRIMARY KEY (execution_id, step_index, item_index)
    ) WITHOUT ROWID;",
    // 11: signals delivered to executions (wait steps take them), the first of a name kept.
    "CREATE TABLE signals (
        execution_id TEXT NOT NULL,
        name TEXT NOT NULL,
        record TEXT NOT NULL,
        at_ms INTEGER NOT NULL,
        PRIMARY KEY (execution_id, name)
    ) WITHOUT ROWID;",
    // 12: which execution holds which artifact (the bytes are in the artifact store).
    "CREATE TABLE artifacts (
        execution_id TEXT NOT NULL,
        digest TEXT NOT NULL,
        name TEXT NOT NULL,
        step_id TEXT NOT NULL,
        bytes INTEGER NOT NULL,
        media_type TEXT,
        created_at_ms INTEGER NOT NULL,
        PRIMARY KEY (execution_id, step_id, name, digest)
    ) WITHOUT ROWID;
    CREATE INDEX artifacts_by_digest ON artifacts (digest);",
];
