fn main() {
    std::process::exit(flywheel_bench::main());
}
