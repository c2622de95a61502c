//! The connection to gdb: a TCP stream (`--listen`, `smmlab run --gdb`) or the process's stdin
//! and stdout (`--stdio`, for gdb's `target remote | smmlab gdb --stdio ...`).

use gdbstub::conn::{Connection, ConnectionExt};
use std::io::Write;
use std::net::TcpStream;

pub enum Link {
    Tcp(TcpStream),
    Stdio(Stdio),
}

/// stdin and stdout, with one byte read ahead for [`ConnectionExt::peek`]. stdin is read
/// unbuffered (one `read` of file descriptor 0 a byte), so that `poll` sees every byte gdb
/// sent that was not read yet.
pub struct Stdio {
    stdout: std::io::Stdout,
    ahead: Option<u8>,
}

impl Stdio {
    pub fn new() -> Self {
        Stdio { stdout: std::io::stdout(), ahead: None }
    }

    fn read_byte(&mut self) -> std::io::Result<u8> {
        let mut b = 0u8;
        loop {
            // SAFETY: reads at most one byte into `b`.
            let n = unsafe { libc::read(libc::STDIN_FILENO, (&mut b as *mut u8).cast(), 1) };
            match n {
                1 => return Ok(b),
                0 => return Err(std::io::ErrorKind::UnexpectedEof.into()),
                _ => {
                    let e = std::io::Error::last_os_error();
                    if e.kind() != std::io::ErrorKind::Interrupted {
                        return Err(e);
                    }
                }
            }
        }
    }

    /// Whether stdin has a byte (or its end) to read now, without blocking.
    fn readable(&self) -> std::io::Result<bool> {
        let mut fd = libc::pollfd { fd: libc::STDIN_FILENO, events: libc::POLLIN, revents: 0 };
        // SAFETY: one valid pollfd, a zero timeout.
        let n = unsafe { libc::poll(&mut fd, 1, 0) };
        if n < 0 {
            return Err(std::io::Error::last_os_error());
        }
        Ok(n > 0 && fd.revents & (libc::POLLIN | libc::POLLHUP | libc::POLLERR) != 0)
    }
}

impl Connection for Link {
    type Error = std::io::Error;

    fn write(&mut self, byte: u8) -> Result<(), Self::Error> {
        self.write_all(&[byte])
    }

    fn write_all(&mut self, buf: &[u8]) -> Result<(), Self::Error> {
        match self {
            Link::Tcp(s) => Write::write_all(s, buf),
            Link::Stdio(s) => s.stdout.lock().write_all(buf),
        }
    }

    fn flush(&mut self) -> Result<(), Self::Error> {
        match self {
            Link::Tcp(s) => Write::flush(s),
            Link::Stdio(s) => s.stdout.lock().flush(),
        }
    }

    fn on_session_start(&mut self) -> Result<(), Self::Error> {
        match self {
            Link::Tcp(s) => s.set_nodelay(true),
            Link::Stdio(_) => Ok(()),
        }
    }
}

impl ConnectionExt for Link {
    fn read(&mut self) -> Result<u8, Self::Error> {
        match self {
            Link::Tcp(s) => ConnectionExt::read(s),
            Link::Stdio(s) => match s.ahead.take() {
                Some(b) => Ok(b),
                None => s.read_byte(),
            },
        }
    }

    fn peek(&mut self) -> Result<Option<u8>, Self::Error> {
        match self {
            Link::Tcp(s) => ConnectionExt::peek(s),
            Link::Stdio(s) => {
                if s.ahead.is_none() && s.readable()? {
                    s.ahead = Some(s.read_byte()?);
                }
                Ok(s.ahead)
            }
        }
    }
}
