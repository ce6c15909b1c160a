//! Board profiles (boards/*.toml): which GPIO lines carry the LEDs and which camera to open.
//! The supported boards' profiles are compiled in; `--config FILE` reads any other.

use std::path::{Path, PathBuf};

use anyhow::{bail, Result};
use serde::Deserialize;

use crate::device::indicate::Led;

/// Profiles shipped in boards/, by name.
/// The names `--board` takes.
pub const BUILT_IN_NAMES: [&str; 5] =
    ["raspberry-pi-4", "raspberry-pi-5", "jetson-nano", "jetson-orin-nano", "generic"];

const BUILT_IN: [(&str, &str); 5] = [
    ("raspberry-pi-4", include_str!("../../boards/raspberry-pi-4.toml")),
    ("raspberry-pi-5", include_str!("../../boards/raspberry-pi-5.toml")),
    ("jetson-nano", include_str!("../../boards/jetson-nano.toml")),
    ("jetson-orin-nano", include_str!("../../boards/jetson-orin-nano.toml")),
    ("generic", include_str!("../../boards/generic.toml")),
];

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Board {
    pub name: String,
    #[serde(default)]
    pub description: String,
    pub gpio: GpioConfig,
    pub leds: LedLines,
    pub camera: CameraConfig,
    #[serde(default)]
    pub review: ReviewConfig,
}

/// The review station on this board: `karyoscreen-review.service` runs `serve --config` with
/// the profile, and serves only when the integrator has turned it on here.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReviewConfig {
    /// Off unless turned on: it opens a port on the lab network.
    #[serde(default)]
    pub enabled: bool,
    #[serde(default = "ReviewConfig::default_listen")]
    pub listen: String,
    /// Reached through a TLS proxy: the session cookie is marked Secure.
    #[serde(default)]
    pub https: bool,
}

impl ReviewConfig {
    fn default_listen() -> String {
        "127.0.0.1:8080".to_string()
    }
}

impl Default for ReviewConfig {
    fn default() -> Self {
        ReviewConfig { enabled: false, listen: ReviewConfig::default_listen(), https: false }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum GpioAbi {
    /// GPIO character device uAPI v1 (Jetson Nano's 4.9 kernel).
    V1,
    V2,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GpioConfig {
    /// Chip for lines given by offset, e.g. `gpiochip0` or `/dev/gpiochip4`.
    pub chip: String,
    pub abi: GpioAbi,
    #[serde(default)]
    pub active_low: bool,
}

/// A line found by name on any chip, else by offset on the profile's chip.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LineRef {
    pub line: Option<String>,
    pub offset: Option<u32>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LedLines {
    pub ready: LineRef,
    pub busy: LineRef,
    pub normal: LineRef,
    pub abnormal: LineRef,
    pub indeterminate: LineRef,
    pub fault: LineRef,
}

impl LedLines {
    pub fn get(&self, led: Led) -> &LineRef {
        match led {
            Led::Ready => &self.ready,
            Led::Busy => &self.busy,
            Led::Normal => &self.normal,
            Led::Abnormal => &self.abnormal,
            Led::Indeterminate => &self.indeterminate,
            Led::Fault => &self.fault,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub enum PixelFormat {
    YUYV,
    GREY,
    MJPG,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CameraConfig {
    pub device: PathBuf,
    pub format: PixelFormat,
    pub width: u32,
    pub height: u32,
}

impl Board {
    pub fn built_in(name: &str) -> Result<Board> {
        let Some((_, text)) = BUILT_IN.iter().find(|(n, _)| *n == name) else {
            let names: Vec<&str> = BUILT_IN.iter().map(|(n, _)| *n).collect();
            bail!("no board named {name:?}; built-in boards: {} (or pass --config FILE)", names.join(", "));
        };
        Board::parse(text, &format!("built-in board {name}"))
    }

    pub fn load(path: &Path) -> Result<Board> {
        let text = crate::integrity::input::read_text(path, "board profile")?;
        Board::parse(&text, &path.display().to_string())
    }

    pub fn parse(text: &str, origin: &str) -> Result<Board> {
        let board: Board = toml::from_str(text)
            .map_err(|e| anyhow::anyhow!("{origin}: {}", e.to_string().replace('\n', " ").trim_end()))?;
        board.validate().map_err(|e| anyhow::anyhow!("{origin}: {e}"))?;
        Ok(board)
    }

    fn validate(&self) -> Result<(), String> {
        let mut seen: Vec<(&str, String)> = Vec::new();
        for led in Led::ALL {
            let line = self.leds.get(led);
            if line.line.as_deref().is_none_or(str::is_empty) && line.offset.is_none() {
                return Err(format!("LED {} needs a line name or an offset", led.name()));
            }
            let key = line.line.clone().unwrap_or_else(|| format!("offset {}", line.offset.unwrap_or(0)));
            if let Some((other, _)) = seen.iter().find(|(_, k)| *k == key) {
                return Err(format!("LEDs {other} and {} share {key}", led.name()));
            }
            seen.push((led.name(), key));
        }
        if self.review.listen.parse::<std::net::SocketAddr>().is_err() {
            return Err(format!("review listen {:?} is not an ADDRESS:PORT such as 0.0.0.0:8080", self.review.listen));
        }
        let c = &self.camera;
        if !(16..=8192).contains(&c.width) || !(16..=8192).contains(&c.height) {
            return Err(format!("camera size {}x{} is outside 16..8192", c.width, c.height));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_built_in_profile_is_valid() {
        assert_eq!(BUILT_IN.map(|(name, _)| name), BUILT_IN_NAMES, "--board's names are the profiles'");
        for (name, _) in BUILT_IN {
            let board = Board::built_in(name).unwrap();
            assert_eq!(board.name, name);
        }
    }

    #[test]
    fn errors_name_the_problem() {
        let pi4 = include_str!("../../boards/raspberry-pi-4.toml");
        let err = Board::parse(&pi4.replace("abi = \"v2\"", "abi = \"v3\""), "x.toml").unwrap_err().to_string();
        assert!(err.starts_with("x.toml: ") && err.contains("v3"), "{err}");
        let err = Board::parse(&pi4.replace("GPIO27", "GPIO17"), "x.toml").unwrap_err().to_string();
        assert!(err.contains("share GPIO17"), "{err}");
        let err = Board::parse(&pi4.replace("width = 1280", "width = 0"), "x.toml").unwrap_err().to_string();
        assert!(err.contains("camera size"), "{err}");
        let err = Board::parse(&pi4.replace("listen = \"0.0.0.0:8080\"", "listen = \"lab-pc\""), "x.toml").unwrap_err();
        assert!(err.to_string().contains("review listen \"lab-pc\""), "{err}");
        let err = Board::parse(&format!("{pi4}\nbogus = 1\n"), "x.toml").unwrap_err().to_string();
        assert!(err.contains("bogus"), "{err}");
        assert!(Board::built_in("toaster").unwrap_err().to_string().contains("raspberry-pi-4"));
    }
}
