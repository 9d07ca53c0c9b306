//! criterion: the read path (resolve + call) of every strategy in the registry, steady and in
//! transition as Patched and as Unpatched. One iteration is `CALLS` calls cycling over the
//! fixture's sites; criterion's throughput line gives calls per second.
//!
//! `cargo bench -p benches --bench read_path [-- --quick]`

use std::hint::black_box;

use benches::{Fixture, Path};
use criterion::{BenchmarkGroup, BenchmarkId, Criterion, Throughput, criterion_group, criterion_main, measurement::WallTime};
use dispatch::{Strategy, Visitor};

const CALLS: usize = 256;

struct ReadPath<'a, 'c> {
    group: &'a mut BenchmarkGroup<'c, WallTime>,
    path: Path,
}

impl Visitor for ReadPath<'_, '_> {
    type Output = ();

    fn visit<S: Strategy>(&mut self) {
        // Builds the fixture and verifies that the path resolves as expected before timing.
        let fixture = Fixture::<S>::new(self.path);
        self.group.bench_function(BenchmarkId::from_parameter(S::INFO.name), |b| {
            b.iter(|| black_box(fixture.calls(CALLS)))
        });
        fixture.verify();
    }
}

fn read_path(c: &mut Criterion) {
    for path in Path::ALL {
        let mut group = c.benchmark_group(path.name());
        group.throughput(Throughput::Elements(CALLS as u64));
        dispatch::strategy::visit_all(&mut ReadPath { group: &mut group, path });
        group.finish();
    }
}

criterion_group!(benches, read_path);
criterion_main!(benches);
