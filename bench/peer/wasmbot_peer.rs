// bench/abitest.py --peer: N HTTP lifecycles of one module through proxy-wasm/test-framework.
//
// Copied into the test-framework checkout as examples/wasmbot_peer.rs and run as
// `cargo run --release --example wasmbot_peer -- MODULE N`; prints requests per second of wall
// time, then of this thread's CPU time (from /proc/thread-self/schedstat, as the Python side
// times its loops on the thread's CPU clock; "-" when that file is not readable).
// The calls match bench/abitest.py's: context create, request headers, response headers,
// done, log, delete, with the framework's defaults answering every host call.

use anyhow::Result;
use proxy_wasm_test_framework::tester;
use proxy_wasm_test_framework::types::*;
use std::time::Instant;

/// This thread's time on a CPU so far, in nanoseconds (Linux's schedstat), if readable.
fn cpu_ns() -> Option<u64> {
    let stat = std::fs::read_to_string("/proc/thread-self/schedstat").ok()?;
    stat.split_whitespace().next()?.parse().ok()
}

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let n: i32 = args[2].parse()?;
    let mut t = tester::mock(tester::MockSettings {
        wasm_path: args[1].clone(),
        quiet: true,
        allow_unexpected: true,
    })?;
    t.set_quiet(true);
    t.call_start().execute_and_expect(ReturnType::None)?;
    t.call_proxy_on_context_create(1, 0).execute_and_expect(ReturnType::None)?;
    t.call_proxy_on_vm_start(1, 0).execute_and_expect(ReturnType::Bool(true))?;
    t.call_proxy_on_configure(1, 0).execute_and_expect(ReturnType::Bool(true))?;
    let cpu_started = cpu_ns();
    let started = Instant::now();
    for i in 0..n {
        let ctx = 2 + i;
        t.call_proxy_on_context_create(ctx, 1).execute_and_expect(ReturnType::None)?;
        t.call_proxy_on_request_headers(ctx, 4, true)
            .execute_and_expect(ReturnType::Action(Action::Continue))?;
        t.call_proxy_on_response_headers(ctx, 1, true)
            .execute_and_expect(ReturnType::Action(Action::Continue))?;
        t.call_proxy_on_done(ctx).execute_and_expect(ReturnType::Bool(true))?;
        t.call_proxy_on_log(ctx).execute_and_expect(ReturnType::None)?;
        t.call_proxy_on_delete(ctx).execute_and_expect(ReturnType::None)?;
    }
    let wall = started.elapsed().as_secs_f64();
    let cpu = match (cpu_started, cpu_ns()) {
        (Some(a), Some(b)) if b > a => format!("{}", f64::from(n) / ((b - a) as f64 / 1e9)),
        _ => "-".to_string(),
    };
    println!("{} {}", f64::from(n) / wall, cpu);
    Ok(())
}
