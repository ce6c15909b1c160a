//! Indicator LEDs: a panel generic over embedded-hal's `OutputPin`, so the same logic drives
//! the board's GPIO lines, the console (demo) or test pins. One file per backend.

pub mod console;
pub mod gpio;

use embedded_hal::digital::OutputPin;
use serde::{Deserialize, Serialize};

use crate::pipeline::decide::Verdict;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Led {
    Ready,
    Busy,
    Normal,
    Abnormal,
    Indeterminate,
    Fault,
}

impl Led {
    pub const ALL: [Led; 6] = [Led::Ready, Led::Busy, Led::Normal, Led::Abnormal, Led::Indeterminate, Led::Fault];

    pub fn name(self) -> &'static str {
        match self {
            Led::Ready => "ready",
            Led::Busy => "busy",
            Led::Normal => "normal",
            Led::Abnormal => "abnormal",
            Led::Indeterminate => "indeterminate",
            Led::Fault => "fault",
        }
    }

    pub fn for_verdict(verdict: Verdict) -> Led {
        match verdict {
            Verdict::Normal => Led::Normal,
            Verdict::Abnormal => Led::Abnormal,
            Verdict::Indeterminate => Led::Indeterminate,
        }
    }

    fn index(self) -> usize {
        Led::ALL.iter().position(|&l| l == self).unwrap_or(0)
    }
}

/// Six LEDs in `Led::ALL` order. `active_low` boards light an LED by driving its line low.
pub struct Panel<P: OutputPin> {
    pins: [P; 6],
    lit: [bool; 6],
    active_low: bool,
}

impl<P: OutputPin> Panel<P> {
    /// Takes the pins and turns every LED off.
    pub fn new(pins: [P; 6], active_low: bool) -> Result<Self, P::Error> {
        let mut panel = Panel { pins, lit: [true; 6], active_low };
        panel.all_off()?;
        Ok(panel)
    }

    pub fn set(&mut self, led: Led, on: bool) -> Result<(), P::Error> {
        let i = led.index();
        if on != self.active_low {
            self.pins[i].set_high()?;
        } else {
            self.pins[i].set_low()?;
        }
        self.lit[i] = on;
        Ok(())
    }

    pub fn is_lit(&self, led: Led) -> bool {
        self.lit[led.index()]
    }

    /// Ready plus exactly one verdict LED; busy and fault off.
    pub fn show_verdict(&mut self, verdict: Verdict) -> Result<(), P::Error> {
        let wanted = Led::for_verdict(verdict);
        for led in Led::ALL {
            self.set(led, led == wanted || led == Led::Ready)?;
        }
        Ok(())
    }

    pub fn all_off(&mut self) -> Result<(), P::Error> {
        for led in Led::ALL {
            self.set(led, false)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::RefCell;
    use std::convert::Infallible;
    use std::rc::Rc;

    /// A line level we can read back, standing in for a GPIO line in logic tests.
    struct MockPin(Rc<RefCell<bool>>);

    impl embedded_hal::digital::ErrorType for MockPin {
        type Error = Infallible;
    }

    impl OutputPin for MockPin {
        fn set_low(&mut self) -> Result<(), Infallible> {
            *self.0.borrow_mut() = false;
            Ok(())
        }
        fn set_high(&mut self) -> Result<(), Infallible> {
            *self.0.borrow_mut() = true;
            Ok(())
        }
    }

    fn panel(active_low: bool) -> (Panel<MockPin>, Vec<Rc<RefCell<bool>>>) {
        let levels: Vec<_> = (0..6).map(|_| Rc::new(RefCell::new(!active_low))).collect();
        let pins = std::array::from_fn(|i| MockPin(levels[i].clone()));
        (Panel::new(pins, active_low).unwrap(), levels)
    }

    #[test]
    fn verdict_lights_one_led_and_ready() {
        let (mut p, levels) = panel(false);
        p.show_verdict(Verdict::Abnormal).unwrap();
        let high: Vec<bool> = levels.iter().map(|l| *l.borrow()).collect();
        assert_eq!(high, [true, false, false, true, false, false]);
        p.show_verdict(Verdict::Normal).unwrap();
        let high: Vec<bool> = levels.iter().map(|l| *l.borrow()).collect();
        assert_eq!(high, [true, false, true, false, false, false]);
    }

    #[test]
    fn active_low_inverts_levels() {
        let (mut p, levels) = panel(true);
        assert!(levels.iter().all(|l| *l.borrow()), "off is high on an active-low board");
        p.show_verdict(Verdict::Indeterminate).unwrap();
        assert!(!*levels[Led::Indeterminate.index()].borrow());
        assert!(p.is_lit(Led::Indeterminate));
        p.all_off().unwrap();
        assert!(levels.iter().all(|l| *l.borrow()));
    }
}
