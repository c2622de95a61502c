//! Thermal safety and power management: the fan control handler that runs on the ICH9
//! software SMI timer (a periodic handler, re-armed every time: 16 ms), and the handler for
//! the hardware monitor's limit SMI (GPI 1): at the high limit the fan goes to full speed, at
//! the critical limit the machine is switched off (S5) before it is damaged.

use crate::flash;
use firmware::con::{dec, puts};
use firmware::hw::*;
use firmware::io;
use firmware::layout::{SmmContext, SMI_EN};
use firmware::sw::SETTING_FAN_MIN_DUTY;

/// Below this the fan runs at its minimum duty; at the hardware monitor's HIGH limit, 100 %.
const CURVE_START_C: u64 = 45;
const DEFAULT_MIN_DUTY: u64 = 30;

static mut FAN_FAILED: bool = false;

/// The duty cycle for temperature `t` (degrees C): linear from `min` at 45 C to 100 % at the
/// high limit.
fn duty_for(t: u64, high: u64, min: u64) -> u64 {
    if t <= CURVE_START_C || high <= CURVE_START_C {
        min
    } else if t >= high {
        100
    } else {
        min + (100 - min) * (t - CURVE_START_C) / (high - CURVE_START_C)
    }
}

/// Restarts the one-shot software SMI timer (it starts when SWSMI_TMR_EN goes 0 -> 1).
pub fn rearm_timer() {
    let en = io::inl(SMI_EN);
    io::outl(SMI_EN, en & !SMI_SWSMI_TMR);
    io::outl(SMI_EN, en | SMI_SWSMI_TMR);
}

/// The periodic fan control handler.
pub fn periodic(_ctx: &mut SmmContext) {
    let t = hwmon_read(HWMON_TEMP) as u64;
    let high = hwmon_read(HWMON_HIGH) as u64;
    let min = flash::setting(SETTING_FAN_MIN_DUTY).filter(|&d| d <= 100).unwrap_or(DEFAULT_MIN_DUTY);
    let duty = duty_for(t, high, min);
    hwmon_write(HWMON_FAN_DUTY, duty as u8);
    let rpm = fan_rpm();
    puts("smm: periodic fan-control T=");
    dec(t);
    puts(" C -> duty ");
    dec(duty);
    puts("% (min ");
    dec(min);
    puts("%), fan ");
    dec(rpm as u64);
    puts(" rpm");
    if duty > 0 && rpm == 0 {
        // SAFETY: one CPU in SMM.
        unsafe { FAN_FAILED = true };
        puts(" FAN FAILURE (no tachometer signal)");
    }
    puts("\n");
    rearm_timer();
}

/// The hardware monitor's limit SMI.
pub fn limit(_ctx: &mut SmmContext) {
    let sts = hwmon_read(HWMON_INT_STS);
    hwmon_write(HWMON_INT_STS, sts);
    io::outw(ALT_GP_SMI_STS, GPI_HWMON);
    let t = hwmon_read(HWMON_TEMP) as u64;
    puts("smm: thermal T=");
    dec(t);
    puts(" C");
    if sts & HWMON_INT_CRIT != 0 {
        puts(" >= critical ");
        dec(hwmon_read(HWMON_CRIT) as u64);
        puts(" C");
        // SAFETY: one CPU in SMM.
        if unsafe { FAN_FAILED } {
            puts(" (fan failed)");
        }
        puts(": thermal shutdown, entering S5\n");
        io::outl(PM1_CNT, PM1_CNT_S5 | PM1_CNT_SLP_EN);
        return;
    }
    if sts & HWMON_INT_HIGH != 0 {
        hwmon_write(HWMON_FAN_DUTY, 100);
        puts(" >= high limit ");
        dec(hwmon_read(HWMON_HIGH) as u64);
        puts(" C: fan to 100%\n");
        return;
    }
    puts(" (no limit status)\n");
}
