//! Console backend: every LED change is a line on stdout. Used by the demo and on a desk without a board.

use std::convert::Infallible;

use embedded_hal::digital::{ErrorType, OutputPin};

use super::{Led, Panel};

pub struct ConsolePin {
    led: Led,
    /// Last level written; `None` before the first write so the first change is not printed.
    level: Option<bool>,
    active_low: bool,
}

impl ErrorType for ConsolePin {
    type Error = Infallible;
}

impl ConsolePin {
    fn write(&mut self, high: bool) {
        let was_lit = self.level.map(|l| l != self.active_low);
        let lit = high != self.active_low;
        if was_lit.is_some() && was_lit != Some(lit) {
            println!("  LED {:<13} {}", self.led.name(), if lit { "on" } else { "off" });
        }
        self.level = Some(high);
    }
}

impl OutputPin for ConsolePin {
    fn set_low(&mut self) -> Result<(), Infallible> {
        self.write(false);
        Ok(())
    }

    fn set_high(&mut self) -> Result<(), Infallible> {
        self.write(true);
        Ok(())
    }
}

/// A panel that prints each LED as it changes.
pub fn panel() -> Panel<ConsolePin> {
    let pins = Led::ALL.map(|led| ConsolePin { led, level: None, active_low: false });
    match Panel::new(pins, false) {
        Ok(panel) => panel,
        Err(never) => match never {},
    }
}
