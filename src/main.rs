//! `station`: the inspection station's command line. Glue only: the commands live in `inspection_station::cli`.

fn main() {
    std::process::exit(inspection_station::cli::main());
}
