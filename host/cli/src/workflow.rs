//! `plexus workflow validate|plan|graph` (files) and `register|list|show|rm` (daemon).

use crate::{Global, load_host};
use anyhow::Context as _;
use clap::{Subcommand, ValueEnum};
use plexus_host::Host;
use plexus_workflow::{Invalid, ValidWorkflow, dag, load_file};
use serde_json::json;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

#[derive(Subcommand)]
pub enum WorkflowCommand {
    /// Check a workflow file and report every problem at once (with YAML line numbers).
    Validate {
        /// Workflow file (.yaml, .yml or .json).
        file: PathBuf,
        /// Print JSON: {"valid": bool, "problems": [...]}.
        #[arg(long)]
        json: bool,
    },
    /// Print the execution stages: steps that can run together.
    Plan {
        /// Workflow file.
        file: PathBuf,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Print the DAG as a Mermaid flowchart or Graphviz DOT.
    Graph {
        /// Workflow file.
        file: PathBuf,
        /// Output format.
        #[arg(long, value_enum, default_value = "mermaid")]
        format: GraphFormat,
    },
    /// Register a workflow file on the daemon (a new version when its id exists).
    Register {
        /// Workflow file.
        file: PathBuf,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// List the workflows registered on the daemon.
    List {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Print a registered workflow's definition.
    Show {
        /// Workflow id.
        id: String,
        /// A version other than the current one.
        #[arg(long)]
        version: Option<u32>,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Delete a workflow from the daemon (executions pinned to it go on).
    Rm {
        /// Workflow id.
        id: String,
    },
    /// Delete every workflow from the daemon (QtForge's clear_workflows; executions go on).
    Clear {
        /// Really delete them all.
        #[arg(long)]
        yes: bool,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// List every version of a registered workflow, newest first.
    Versions {
        /// Workflow id.
        id: String,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Make an earlier version current again (registered as a new version).
    Rollback {
        /// Workflow id.
        id: String,
        /// The version to make current again.
        version: u32,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Clone, Copy, ValueEnum)]
pub enum GraphFormat {
    /// Mermaid `flowchart TD`.
    Mermaid,
    /// Graphviz DOT.
    Dot,
}

/// Load the plugins and validate `file` against them; print the problems and
/// return `Err(exit code)` when invalid.
pub fn load_valid(global: &Global, file: &Path) -> anyhow::Result<Result<(Host, ValidWorkflow), ExitCode>> {
    load_valid_protecting(global, file, &[])
}

/// [`load_valid`], WASM plugins' grants kept out of `protected` too.
pub fn load_valid_protecting(
    global: &Global,
    file: &Path,
    protected: &[&Path],
) -> anyhow::Result<Result<(Host, ValidWorkflow), ExitCode>> {
    let host = crate::load_host_protecting(global, protected)?;
    match load_file(file, Some(&host)) {
        Ok(valid) => Ok(Ok((host, valid))),
        Err(invalid) => {
            print_problems(&invalid);
            Ok(Err(ExitCode::from(crate::exit::ERROR)))
        }
    }
}

pub(crate) fn print_problems(invalid: &Invalid) {
    errln!("{}: {} problem(s)", invalid.file, invalid.problems.len());
    for p in &invalid.problems {
        let mut text = p.to_string();
        if let Some(line) = p.line {
            text = text.trim_start_matches(&format!("line {line}: ")).to_owned();
            errln!("{}:{line}: {text}", invalid.file);
        } else {
            errln!("{}: {text}", invalid.file);
        }
    }
}

pub fn run(global: &Global, command: WorkflowCommand) -> anyhow::Result<ExitCode> {
    match command {
        WorkflowCommand::Register { file, json } => crate::remote::register(global, &file, json),
        WorkflowCommand::List { json } => crate::remote::workflows(global, json),
        WorkflowCommand::Show { id, version, json } => crate::remote::show_workflow(global, &id, version, json),
        WorkflowCommand::Rm { id } => crate::remote::remove_workflow(global, &id),
        WorkflowCommand::Clear { yes, json } => crate::remote::clear_workflows(global, yes, json),
        WorkflowCommand::Versions { id, json } => crate::remote::workflow_history(global, &id, json),
        WorkflowCommand::Rollback { id, version, json } => crate::remote::rollback_workflow(global, &id, version, json),
        WorkflowCommand::Validate { file, json } => {
            let host = load_host(global)?;
            match load_file(&file, Some(&host)) {
                Ok(valid) => {
                    if json {
                        outln!("{}", json!({"valid": true, "problems": [], "steps": valid.workflow.steps.len()}));
                    } else {
                        outln!(
                            "{}: valid ({} steps, {} mode)",
                            file.display(),
                            valid.workflow.steps.len(),
                            valid.workflow.mode
                        );
                    }
                    Ok(ExitCode::SUCCESS)
                }
                Err(invalid) => {
                    if json {
                        outln!("{}", json!({"valid": false, "problems": invalid.problems}));
                    } else {
                        print_problems(&invalid);
                    }
                    Ok(ExitCode::from(crate::exit::ERROR))
                }
            }
        }
        WorkflowCommand::Plan { file, json } => {
            let (_host, valid) = match load_valid(global, &file)? {
                Ok(pair) => pair,
                Err(code) => return Ok(code),
            };
            let wf = &valid.workflow;
            let stages: Vec<Vec<&str>> =
                valid.dag.stages().iter().map(|s| s.iter().map(|&i| wf.steps[i].id.as_str()).collect()).collect();
            if json {
                let order: Vec<&str> = valid.dag.order.iter().map(|&i| wf.steps[i].id.as_str()).collect();
                outln!(
                    "{}",
                    json!({"workflow": wf.id, "mode": wf.mode, "max_parallel": wf.max_parallel, "stages": stages, "order": order})
                );
                return Ok(ExitCode::SUCCESS);
            }
            let parallel = match wf.max_parallel {
                Some(n) => format!(", at most {n} at once"),
                None if wf.mode.is_serial() => ", one step at a time".into(),
                None => ", up to one step per core at once".into(),
            };
            outln!("{} ({} mode{parallel})", wf.id, wf.mode);
            for (n, stage) in stages.iter().enumerate() {
                outln!("  stage {}: {}", n + 1, stage.join(", "));
            }
            // The execution order as Codomyrmex prints it: [[task1], [task2, task3], [task4]].
            let order: Vec<String> = stages.iter().map(|s| format!("[{}]", s.join(", "))).collect();
            outln!("stages: [{}]", order.join(", "));
            Ok(ExitCode::SUCCESS)
        }
        WorkflowCommand::Graph { file, format } => {
            // Drawing needs no plugins: validate the shape only.
            let valid = load_file(&file, None).map_err(|invalid| {
                print_problems(&invalid);
                anyhow::anyhow!("{} is not a valid workflow", file.display())
            });
            let valid = valid.context("cannot draw the graph")?;
            out!(
                "{}",
                match format {
                    GraphFormat::Mermaid => dag::mermaid(&valid.workflow),
                    GraphFormat::Dot => dag::dot(&valid.workflow),
                }
            );
            Ok(ExitCode::SUCCESS)
        }
    }
}
