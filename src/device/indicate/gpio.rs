//! GPIO character-device backend: each LED line is found by name on any chip (survives chip
//! renumbering, e.g. Raspberry Pi 5 kernels), else by offset on the profile's chip, then held
//! through gpiocdev, which speaks uAPI v2 and v1 (Jetson Nano's 4.9 kernel has only v1).

use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use embedded_hal::digital::{ErrorType, OutputPin};
use gpiocdev::line::Value;
use gpiocdev::AbiVersion;

use super::{Led, Panel};
use crate::device::board::{Board, GpioAbi, LineRef};

const CONSUMER: &str = "karyoscreen";

/// One requested output line.
pub struct GpioPin {
    request: gpiocdev::Request,
    offset: u32,
}

#[derive(Debug)]
pub struct GpioError(gpiocdev::Error);

impl std::fmt::Display for GpioError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "GPIO write: {}", self.0)
    }
}

impl embedded_hal::digital::Error for GpioError {
    fn kind(&self) -> embedded_hal::digital::ErrorKind {
        embedded_hal::digital::ErrorKind::Other
    }
}

impl ErrorType for GpioPin {
    type Error = GpioError;
}

impl GpioPin {
    fn write(&mut self, value: Value) -> Result<(), GpioError> {
        self.request.set_value(self.offset, value).map(|_| ()).map_err(GpioError)
    }
}

impl OutputPin for GpioPin {
    fn set_low(&mut self) -> Result<(), GpioError> {
        self.write(Value::Inactive)
    }

    fn set_high(&mut self) -> Result<(), GpioError> {
        self.write(Value::Active)
    }
}

/// Requests the six LED lines of a board profile, all off.
pub fn panel(board: &Board) -> Result<Panel<GpioPin>> {
    let mut pins = Vec::with_capacity(Led::ALL.len());
    for led in Led::ALL {
        let (chip, offset) =
            resolve(board, board.leds.get(led)).with_context(|| format!("board {}: LED {}", board.name, led.name()))?;
        let pin = request(board.gpio.abi, &chip, offset)
            .with_context(|| format!("board {}: LED {} ({}, line {offset})", board.name, led.name(), chip.display()))?;
        pins.push(pin);
    }
    let pins: [GpioPin; 6] = pins.try_into().map_err(|_| anyhow::anyhow!("six LEDs expected"))?;
    Panel::new(pins, board.gpio.active_low).map_err(|e| anyhow::anyhow!("board {}: turning LEDs off: {e}", board.name))
}

fn resolve(board: &Board, line: &LineRef) -> Result<(PathBuf, u32)> {
    if let Some(name) = line.line.as_deref() {
        if let Some(found) = gpiocdev::find_named_line(name) {
            return Ok((found.chip, found.info.offset));
        }
        if line.offset.is_none() {
            bail!("no GPIO line named {name:?} on any chip, and the profile gives no offset");
        }
        log::warn!("no GPIO line named {name:?}; using offset {:?} on {}", line.offset, board.gpio.chip);
    }
    let offset = line.offset.context("profile gives neither a line name nor an offset")?;
    Ok((chip_path(&board.gpio.chip), offset))
}

fn chip_path(chip: &str) -> PathBuf {
    if chip.starts_with('/') {
        PathBuf::from(chip)
    } else {
        PathBuf::from("/dev").join(chip)
    }
}

fn request(abi: GpioAbi, chip: &std::path::Path, offset: u32) -> Result<GpioPin> {
    let abi = match abi {
        GpioAbi::V1 => AbiVersion::V1,
        GpioAbi::V2 => AbiVersion::V2,
    };
    let request = gpiocdev::Request::builder()
        .on_chip(chip)
        .with_consumer(CONSUMER)
        .using_abi_version(abi)
        .with_line(offset)
        .as_output(Value::Inactive)
        .request()?;
    Ok(GpioPin { request, offset })
}
