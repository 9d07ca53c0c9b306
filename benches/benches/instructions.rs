//! gungraun (iai-callgrind's current name): instruction counts of every strategy in the
//! registry on every read path (per `GATE_CALLS` calls, each site from its own call instruction;
//! `shared_steady`: the same calls from one shared instruction) and of the writer operations. Deterministic,
//! so they are what CI gates on (`scripts/gate`); run with `cargo bench -p benches --bench
//! instructions` once `scripts/setup` has installed valgrind and gungraun-runner.
//!
//! Setup (building the fixture) happens in the bench arguments, outside the counted function;
//! the fixture is returned so that its drop is not counted either.

use std::hint::black_box;

use benches::{Fixture, Path, WriterFixture, WriterOp};
use dispatch::{Strategy, TransitionStats};
use gungraun::Callgrind;
use gungraun::prelude::*;

const ROUNDS: usize = benches::GATE_ROUNDS;

/// The per-site section: each site called from its own call instruction.
fn read<S: Strategy>(mut fixture: Fixture<S>) -> (u64, Fixture<S>) {
    let sum = black_box(fixture.per_site(ROUNDS));
    (sum, fixture)
}

/// The same calls from one shared call instruction: what the gate's misprediction count tells
/// apart from the per-site ones.
fn read_shared<S: Strategy>(mut fixture: Fixture<S>) -> (u64, Fixture<S>) {
    let sum = black_box(fixture.shared(ROUNDS));
    (sum, fixture)
}

fn write<S: Strategy>(fixture: WriterFixture<S>) -> (TransitionStats, WriterFixture<S>) {
    let stats = black_box(fixture.run());
    (stats, fixture)
}

/// One benchmark function per path, one `#[bench]` per strategy of the registry.
macro_rules! benchmarks {
    ($($name:ident : $ty:path),* $(,)?) => {
        #[library_benchmark]
        $(#[bench::$name(Fixture::<$ty>::new(Path::Steady))])*
        fn steady<S: Strategy>(f: Fixture<S>) -> (u64, Fixture<S>) { read(f) }

        #[library_benchmark]
        $(#[bench::$name(Fixture::<$ty>::new(Path::TransitionPatched))])*
        fn transition_patched<S: Strategy>(f: Fixture<S>) -> (u64, Fixture<S>) { read(f) }

        #[library_benchmark]
        $(#[bench::$name(Fixture::<$ty>::new(Path::TransitionUnpatched))])*
        fn transition_unpatched<S: Strategy>(f: Fixture<S>) -> (u64, Fixture<S>) { read(f) }

        #[library_benchmark]
        $(#[bench::$name(Fixture::<$ty>::new(Path::Nop))])*
        fn nop<S: Strategy>(f: Fixture<S>) -> (u64, Fixture<S>) { read(f) }

        #[library_benchmark]
        $(#[bench::$name(Fixture::<$ty>::new(Path::Depth2))])*
        fn depth2<S: Strategy>(f: Fixture<S>) -> (u64, Fixture<S>) { read(f) }

        #[library_benchmark]
        $(#[bench::$name(Fixture::<$ty>::new(Path::Steady))])*
        fn shared_steady<S: Strategy>(f: Fixture<S>) -> (u64, Fixture<S>) { read_shared(f) }

        #[library_benchmark]
        $(#[bench::$name(WriterFixture::<$ty>::new(WriterOp::Enable))])*
        fn writer_enable<S: Strategy>(f: WriterFixture<S>) -> (TransitionStats, WriterFixture<S>) { write(f) }

        #[library_benchmark]
        $(#[bench::$name(WriterFixture::<$ty>::new(WriterOp::Replace))])*
        fn writer_replace<S: Strategy>(f: WriterFixture<S>) -> (TransitionStats, WriterFixture<S>) { write(f) }
    };
}

dispatch::for_each_strategy!(benchmarks);

library_benchmark_group!(
    name = read_path;
    benchmarks = steady, transition_patched, transition_unpatched, nop, depth2, shared_steady
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
    config = LibraryBenchmarkConfig::default().tool(Callgrind::with_args(["--branch-sim=yes", "--smc-check=all"]));
    library_benchmark_groups = read_path, writer
);
