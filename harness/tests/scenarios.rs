//! Every file in `scenarios/` is a test: it runs through the real gate
//! against containers and must come out as its `[expect]` says.

use std::path::PathBuf;
use std::time::Duration;

use harness::gate::{self, GateOptions};
use harness::scenario::{self, Scenario};
use harness::stack::BackendKind;
use libtest_mimic::{Arguments, Failed, Trial};

fn main() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let root = root.canonicalize().expect("workspace root");
    let files = scenario::list(&root.join("scenarios")).expect("scenarios/ is readable");
    assert!(!files.is_empty(), "no scenario files in scenarios/");
    let trials = files
        .into_iter()
        .map(|file| {
            let name = file.file_stem().unwrap().to_string_lossy().into_owned();
            let root = root.clone();
            let containers = Scenario::load(&file)
                .map(|s| s.backends.contains(&BackendKind::Containers))
                .unwrap_or(true);
            // A scenario for other backends only is listed, not run.
            Trial::test(name, move || run(&root, &file)).with_ignored_flag(!containers)
        })
        .collect();
    let mut args = Arguments::from_args();
    // Each scenario runs a whole stack; two at a time fit a 2-core machine.
    args.test_threads = args.test_threads.or(Some(2));
    libtest_mimic::run(&args, trials).exit();
}

fn run(root: &std::path::Path, file: &std::path::Path) -> Result<(), Failed> {
    let scenario = Scenario::load(file).map_err(|e| e.to_string())?;
    let opts = GateOptions::from_root(root, BackendKind::Containers, Duration::from_secs(2));
    let rt = tokio::runtime::Runtime::new()?;
    let report = rt.block_on(gate::validate(&scenario, &opts));
    // The figures of every scenario go to the test output (--nocapture).
    println!("{}", report.summary());
    harness::expect::matches(&scenario, &report)
        .map(|_| ())
        .map_err(|why| format!("{why}\n{}", report.summary()).into())
}
