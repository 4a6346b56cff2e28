//! `shipgate`: the server (`shipgate serve`) and the client CLI, in one binary.
#![forbid(unsafe_code)]

/// mimalloc: the system allocator's free lists were a measurable share of request time.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

mod cli;
mod client;
mod demo;
mod exit;
mod output;

fn main() {
    let code = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt.block_on(cli::run()),
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            1
        }
    };
    std::process::exit(code);
}
