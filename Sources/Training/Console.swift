import Foundation
import Glibc

/// Rank 0's output: plain lines, the tutorials' progress lines, and a live progress bar in tqdm's
/// layout when the user watches a terminal. Log lines scroll above the bar, which is drawn again
/// under them. Every other rank prints nothing.
public final class Console {
    public let enabled: Bool
    public let interactive: Bool
    private var barVisible = false
    /// The bar as last drawn, to draw again under a log line.
    private var lastBarText = ""
    private var lastBar = 0.0

    /// `underMPI`: launched by mpirun, which gives every rank a pseudo-terminal even when its own
    /// output goes to a file or a pipe; the bar is drawn only when mpirun's output is a terminal too.
    public init(enabled: Bool, underMPI: Bool) {
        self.enabled = enabled
        interactive = enabled && Console.watchedInTerminal(underMPI: underMPI)
    }

    /// Whether stdout reaches a terminal: our own, and under mpirun (a local rank's parent) mpirun's.
    static func watchedInTerminal(underMPI: Bool) -> Bool {
        guard isatty(1) != 0 else { return false }
        guard underMPI else { return true }
        guard let target = try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/\(getppid())/fd/1") else { return false }
        return target.hasPrefix("/dev/pts/") || target.hasPrefix("/dev/tty")
    }

    public func line(_ s: String) {
        guard enabled else { return }
        let redraw = barVisible
        clearBar()
        print(s)
        if redraw {
            fputs(lastBarText, stdout)
            barVisible = true
        }
        fflush(stdout)
    }

    /// tqdm's layout: `Epoch 2/5:  45%|███████▏        | 56/125 [00:03<00:04, 15234 samples/s, loss=0.2113]`
    public func bar(epoch: Int, epochs: Int, batch: Int, batches: Int, elapsed: Double, samplesPerSecond: Double, loss: Double) {
        guard interactive else { return }
        let now = monotonicSeconds()
        guard now - lastBar > 0.1 || batch >= batches else { return }
        lastBar = now
        let width = 20
        let frac = batches > 0 ? min(1, Double(batch) / Double(batches)) : 1
        let filled = Int(frac * Double(width))
        let bar = String(repeating: "█", count: filled) + String(repeating: " ", count: width - filled)
        let eta = frac > 0 ? elapsed / frac - elapsed : 0
        lastBarText = String(format: "\rEpoch %d/%d: %3.0f%%|%@| %d/%d [%@<%@, %.0f samples/s, loss=%.4f]\u{1B}[K",
                             epoch, epochs, 100 * frac, bar, batch, batches, Console.clock(elapsed), Console.clock(eta), samplesPerSecond, loss)
        fputs(lastBarText, stdout)
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
