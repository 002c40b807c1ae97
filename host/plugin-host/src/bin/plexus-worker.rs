//! `plexus-worker`: the worker process of native plugins with
//! `isolation = "process"`, for programs that embed `plexus-host` but cannot
//! serve as workers themselves (see `plexus_host::worker`). The `plexus`
//! binary serves as its own worker and does not need it.

fn main() {
    #[cfg(unix)]
    plexus_host::worker::serve_if_requested();
    eprintln!("plexus-worker: started by a Plexus host as `plexus-worker {}`; not meant to be run by hand", {
        #[cfg(unix)]
        {
            plexus_host::worker::WORKER_ARG
        }
        #[cfg(not(unix))]
        {
            "__plexus-worker"
        }
    });
    std::process::exit(2);
}
