import Foundation
import Glibc

/// Rank 0's output: plain lines, the tutorials' progress lines, and a live progress bar with ETA
/// when stdout is a terminal. Every other rank prints nothing.
public final class Console {
    public let enabled: Bool
    public let interactive: Bool
    private var barVisible = false

    private var lastBar = 0.0

    /// `interactive` is for a terminal the user watches; mpirun gives every rank a pseudo-terminal
    /// even when its own output goes to a file, so callers pass false under mpirun.
    public init(enabled: Bool, interactive: Bool) {
        self.enabled = enabled
        self.interactive = enabled && interactive && isatty(1) != 0
    }

    public func line(_ s: String) {
        guard enabled else { return }
        clearBar()
        print(s)
        fflush(stdout)
    }

    /// `[=========>          ] 45%  3600/8000  ETA 0:03  15234 samples/s  loss 0.2113`
    public func bar(epoch: Int, epochs: Int, processed: Int, total: Int, elapsed: Double, samplesPerSecond: Double, loss: Double) {
        guard interactive else { return }
        let now = monotonicSeconds()
        guard now - lastBar > 0.1 || processed >= total else { return }
        lastBar = now
        let width = 24
        let frac = total > 0 ? Double(processed) / Double(total) : 1
        let filled = min(width, Int(frac * Double(width)))
        let bar = filled == width ? String(repeating: "=", count: width)
            : String(repeating: "=", count: filled) + ">" + String(repeating: " ", count: width - filled - 1)
        let eta = frac > 0 ? elapsed / frac - elapsed : 0
        let s = String(format: "\rEpoch %d/%d [%@] %3.0f%%  %d/%d  ETA %@  %.0f samples/s  loss %.4f",
                       epoch, epochs, bar, 100 * frac, processed, total, Console.clock(eta), samplesPerSecond, loss)
        fputs(s + "\u{1B}[K", stdout)
        fflush(stdout)
        barVisible = true
    }

    public func clearBar() {
        guard barVisible else { return }
        fputs("\r\u{1B}[K", stdout)
        barVisible = false
    }

    static func clock(_ seconds: Double) -> String {
        let s = Int(max(0, seconds).rounded())
        return s >= 3600 ? String(format: "%d:%02d:%02d", s / 3600, s / 60 % 60, s % 60) : String(format: "%d:%02d", s / 60, s % 60)
    }
}

/// One line on stderr, from any rank: "ddp-train: <message>".
public func warn(_ message: String) {
    fputs("ddp-train: \(message)\n", stderr)
    fflush(stderr)
}

/// Seconds on a monotonic clock.
@inline(__always)
public func monotonicSeconds() -> Double {
    var ts = timespec()
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return Double(ts.tv_sec) + Double(ts.tv_nsec) * 1e-9
}
