//! gungraun (iai-callgrind's current name): instruction counts of every strategy in the
//! registry on every read path (per `GATE_CALLS` calls, each site from its own call instruction;
//! `shared_steady`: the same calls from one shared instruction), of the kernel's handler and its
//! floors written in C (`c_steady`), and of the writer operations. Deterministic,
//! so they are what CI gates on (`scripts/gate`); run with `cargo bench -p benches --bench
//! instructions` once `scripts/setup` has installed valgrind and gungraun-runner.
//!
//! Setup (building the fixture) happens in the bench arguments, outside the counted function;
//! the fixture is returned so that its drop is not counted either.
//!
//! A strategy this machine cannot run gets no fixture (`None`): its benchmarks run nothing, and
//! [`benches::available`] says so on stderr and records it in the file named by
//! `DISPATCH_BENCH_SKIPPED_LOG`, from which `scripts/gate` reports the strategy's benchmarks as
//! skipped and leaves their (empty) counts out. gungraun clears the environment of what it
//! measures, so `main!` passes that variable and `DISPATCH_UNAVAILABLE` through.

use std::hint::black_box;

use benches::{Fixture, Path, SKIPPED_LOG_VAR, WriterFixture, WriterOp};
use dispatch::kernel_c::{C_SITES, CLoop, CLoops};
use dispatch::{Strategy, TransitionStats};
use gungraun::Callgrind;
use gungraun::prelude::*;

const ROUNDS: usize = benches::GATE_ROUNDS;

/// A read-path fixture, or none where the strategy cannot run here (skipped, saying why).
type Read<S> = Option<Fixture<S>>;
/// A writer fixture, or none where the strategy cannot run here.
type Write<S> = Option<WriterFixture<S>>;

/// The per-site loop: each site called from its own call instruction.
fn read<S: Strategy>(fixture: Read<S>) -> (u64, Read<S>) {
    let Some(mut fixture) = fixture else { return (0, None) };
    let sum = black_box(fixture.per_site(ROUNDS));
    (sum, Some(fixture))
}

/// The same calls from one shared call instruction: what the gate's misprediction count tells
/// apart from the per-site ones.
fn read_shared<S: Strategy>(fixture: Read<S>) -> (u64, Read<S>) {
    let Some(mut fixture) = fixture else { return (0, None) };
    let sum = black_box(fixture.shared(ROUNDS));
    (sum, Some(fixture))
}

fn write<S: Strategy>(fixture: Write<S>) -> (Option<TransitionStats>, Write<S>) {
    let stats = black_box(fixture.as_ref().map(|f| f.run()));
    (stats, fixture)
}

/// The fixture of a read path, where the strategy runs here.
fn fixture<S: Strategy>(path: Path) -> Read<S> {
    benches::available::<S>().then(|| Fixture::new(path))
}

/// The fixture of a writer operation, where the strategy runs here.
fn writer<S: Strategy>(op: WriterOp) -> Write<S> {
    benches::available::<S>().then(|| WriterFixture::new(op))
}

/// One benchmark function per path, one `#[bench]` per strategy of the registry.
macro_rules! benchmarks {
    ($($name:ident : $ty:path),* $(,)?) => {
        #[library_benchmark]
        $(#[bench::$name(fixture::<$ty>(Path::Steady))])*
        fn steady<S: Strategy>(f: Read<S>) -> (u64, Read<S>) { read(f) }

        #[library_benchmark]
        $(#[bench::$name(fixture::<$ty>(Path::TransitionPatched))])*
        fn transition_patched<S: Strategy>(f: Read<S>) -> (u64, Read<S>) { read(f) }

        #[library_benchmark]
        $(#[bench::$name(fixture::<$ty>(Path::TransitionUnpatched))])*
        fn transition_unpatched<S: Strategy>(f: Read<S>) -> (u64, Read<S>) { read(f) }

        #[library_benchmark]
        $(#[bench::$name(fixture::<$ty>(Path::Nop))])*
        fn nop<S: Strategy>(f: Read<S>) -> (u64, Read<S>) { read(f) }

        #[library_benchmark]
        $(#[bench::$name(fixture::<$ty>(Path::Depth2))])*
        fn depth2<S: Strategy>(f: Read<S>) -> (u64, Read<S>) { read(f) }

        #[library_benchmark]
        $(#[bench::$name(fixture::<$ty>(Path::Steady))])*
        fn shared_steady<S: Strategy>(f: Read<S>) -> (u64, Read<S>) { read_shared(f) }

        #[library_benchmark]
        $(#[bench::$name(writer::<$ty>(WriterOp::Enable))])*
        fn writer_enable<S: Strategy>(f: Write<S>) -> (Option<TransitionStats>, Write<S>) { write(f) }

        #[library_benchmark]
        $(#[bench::$name(writer::<$ty>(WriterOp::Replace))])*
        fn writer_replace<S: Strategy>(f: Write<S>) -> (Option<TransitionStats>, Write<S>) { write(f) }
    };
}

dispatch::for_each_strategy!(benchmarks);

const _: () =
    assert!(C_SITES == benches::FIXTURE_SITES, "the C loops have the fixtures' sites, so GATE_CALLS counts them too");

/// A C loop's fixture: the loops (set up here, outside the count) and which to run.
fn c_fixture(which: CLoop) -> (CLoops, CLoop) {
    (CLoops::new(), which)
}

// The kernel's handler written in C and its two floors in C (`dispatch::kernel_c`), in the
// per-site loop shape, for as many calls as every read path: the gate holds `klp`'s steady
// count to the C handler's (`benches::gate::fidelity`). (A plain comment: gungraun's attribute
// takes no doc comment.)
#[library_benchmark]
#[bench::c_direct(c_fixture(CLoop::Direct))]
#[bench::c_fnptr(c_fixture(CLoop::Fnptr))]
#[bench::c_handler(c_fixture(CLoop::Handler))]
fn c_steady(fixture: (CLoops, CLoop)) -> (u64, CLoops) {
    let (mut loops, which) = fixture;
    let sum = black_box(loops.run(which, ROUNDS));
    (sum, loops)
}

library_benchmark_group!(
    name = read_path;
    benchmarks = steady, transition_patched, transition_unpatched, nop, depth2, shared_steady, c_steady
);

library_benchmark_group!(
    name = writer;
    benchmarks = writer_enable, writer_replace
);

// Branch simulation adds Bc/Bcm/Bi/Bim to the counts; the gate limits Bim (indirect-branch
// mispredictions), which tells a call instruction per site (≈ 0 per call) from one shared call
// instruction cycling over sites (≈ 1 per call) on any CPU. It does not change Ir. `--smc-check=all`
// makes valgrind notice code that changes anywhere, not only on the stack: `textpoke` re-points its
// call instructions, and without it valgrind kept running its old translations (the soak under
// memcheck counted violations by the hundred thousand).
main!(
    config = LibraryBenchmarkConfig::default()
        .tool(Callgrind::with_args(["--branch-sim=yes", "--smc-check=all"]))
        .pass_through_envs([dispatch::strategy::UNAVAILABLE_VAR, SKIPPED_LOG_VAR]);
    library_benchmark_groups = read_path, writer
);
