//! `station generate-texture-set --texture FILE --out DIR`: the vision models' evaluation set, cut from a real
//! texture photo, with drawn defects and their masks (see `vision::texture_set`).

use std::path::PathBuf;

use crate::vision::texture_set::{self, TextureSetParams};

#[derive(clap::Args)]
pub struct GenerateTexturesArgs {
    /// The texture photo (gray or color; read as gray)
    #[arg(long, value_name = "FILE")]
    texture: PathBuf,
    /// Output folder: train/good, test/good, test/defect/<class>, test/masks/<class>
    #[arg(long, value_name = "DIR")]
    out: PathBuf,
    /// Crop size in pixels
    #[arg(long = "crop", value_name = "PX", default_value_t = 128)]
    crop_px: i32,
    /// Good crops to train on
    #[arg(long, default_value_t = 200)]
    train: usize,
    /// Good crops to test on
    #[arg(long, default_value_t = 50)]
    test_good: usize,
    /// Defective crops to test on (the classes in turn)
    #[arg(long, default_value_t = 60)]
    test_defect: usize,
    #[arg(long, default_value_t = 1)]
    seed: u64,
}

pub fn generate(args: &GenerateTexturesArgs) -> anyhow::Result<()> {
    let params = TextureSetParams {
        crop_px: args.crop_px,
        train: args.train,
        test_good: args.test_good,
        test_defect: args.test_defect,
        seed: args.seed,
    };
    let n = texture_set::generate(&args.texture, &args.out, &params).map_err(anyhow::Error::msg)?;
    println!("wrote {n} images to {}", args.out.display());
    Ok(())
}
