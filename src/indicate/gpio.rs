//! GPIO character-device backend: each LED line is found by name on any chip (survives chip
//! renumbering, e.g. Raspberry Pi 5 kernels), else by offset on the profile's chip, then held
//! through uAPI v2 (gpiocdev) or v1 (linux-embedded-hal's `CdevPin`, for Jetson Nano's 4.9 kernel).

use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use embedded_hal::digital::{ErrorType, OutputPin};
use gpiocdev::line::Value;
use linux_embedded_hal::gpio_cdev::{Chip, LineRequestFlags};
use linux_embedded_hal::CdevPin;

use super::{Led, Panel};
use crate::board::{Board, GpioAbi, LineRef};

const CONSUMER: &str = "karyoscreen";

/// One requested output line, through either ABI.
pub enum GpioPin {
    V1(CdevPin),
    V2 { request: gpiocdev::Request, offset: u32 },
}

#[derive(Debug)]
pub struct GpioError(String);

impl std::fmt::Display for GpioError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
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
    fn write(&mut self, high: bool) -> Result<(), GpioError> {
        match self {
            GpioPin::V1(pin) => if high { pin.set_high() } else { pin.set_low() }
                .map_err(|e| GpioError(format!("GPIO v1 write: {e:?}"))),
            GpioPin::V2 { request, offset } => request
                .set_value(*offset, if high { Value::Active } else { Value::Inactive })
                .map_err(|e| GpioError(format!("GPIO v2 write: {e}"))),
        }
    }
}

impl OutputPin for GpioPin {
    fn set_low(&mut self) -> Result<(), GpioError> {
        self.write(false)
    }

    fn set_high(&mut self) -> Result<(), GpioError> {
        self.write(true)
    }
}

/// Requests the six LED lines of a board profile, all off.
pub fn panel(board: &Board) -> Result<Panel<GpioPin>> {
    let mut pins = Vec::with_capacity(Led::ALL.len());
    for led in Led::ALL {
        let (chip, offset) = resolve(board, board.leds.get(led))
            .with_context(|| format!("board {}: LED {}", board.name, led.name()))?;
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
    match abi {
        GpioAbi::V1 => {
            let mut chip = Chip::new(chip)?;
            let handle = chip.get_line(offset)?.request(LineRequestFlags::OUTPUT, 0, CONSUMER)?;
            Ok(GpioPin::V1(CdevPin::new(handle)?))
        }
        GpioAbi::V2 => {
            let request = gpiocdev::Request::builder()
                .on_chip(chip)
                .with_consumer(CONSUMER)
                .using_abi_version(gpiocdev::AbiVersion::V2)
                .with_line(offset)
                .as_output(Value::Inactive)
                .request()?;
            Ok(GpioPin::V2 { request, offset })
        }
    }
}
