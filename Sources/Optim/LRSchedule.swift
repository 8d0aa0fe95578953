import Foundation

/// `--lr-schedule`: the learning rate of every optimizer step, as a pure function of the step, the
/// epoch and the run's length, with torch.optim.lr_scheduler's closed forms. Being a function (no
/// state), it resumes exactly and is the same on every rank.
///
/// Epoch-based schedules, as the PyTorch examples step them once per epoch (e is the 0-based epoch):
///
///     step:SIZE[:GAMMA]         StepLR:        lr * GAMMA^floor(e / SIZE)            (GAMMA 0.1)
///     multistep:M1,M2[:GAMMA]   MultiStepLR:   lr * GAMMA^(milestones <= e)          (GAMMA 0.1)
///     exponential:GAMMA         ExponentialLR: lr * GAMMA^e
///
/// Step-based schedules over the run's T optimizer steps (t is the 0-based step):
///
///     cosine[:MIN_LR]           CosineAnnealingLR(T_max = T, eta_min = MIN_LR, default 0):
///                               MIN_LR + (lr - MIN_LR) (1 + cos(pi t / T)) / 2
///     onecycle[:PCT_START]      OneCycleLR(max_lr = lr, total_steps = T, pct_start 0.3,
///                               div_factor 25, final_div_factor 1e4, cosine annealing)
///
/// `--warmup-steps W` multiplies any of them by min(1, (t + 1) / W): a linear warm-up whose first
/// step already moves (lr / W).
public enum LRSchedule: Equatable, Sendable, CustomStringConvertible {
    case constant
    case step(size: Int, gamma: Double)
    case multistep(milestones: [Int], gamma: Double)
    case exponential(gamma: Double)
    case cosine(minLR: Double)
    case onecycle(pctStart: Double)

    public struct ParseError: Error, CustomStringConvertible {
        public let description: String
    }

    public init(parsing text: String) throws {
        let parts = text.split(separator: ":", omittingEmptySubsequences: false).map(String.init)
        func fail(_ why: String) -> ParseError {
            ParseError(description: "invalid --lr-schedule '\(text)': \(why) (expected constant, step:SIZE[:GAMMA], "
                       + "multistep:M1,M2,...[:GAMMA], exponential:GAMMA, cosine[:MIN_LR] or onecycle[:PCT_START])")
        }
        func number(_ i: Int, _ what: String, default value: Double? = nil) throws -> Double {
            guard i < parts.count else {
                if let value { return value }
                throw fail("missing \(what)")
            }
            guard let x = Double(parts[i]), x.isFinite else { throw fail("\(what) '\(parts[i])' is not a number") }
            return x
        }
        let arity: Int
        switch parts[0] {
        case "constant", "none":
            self = .constant
            arity = 1
        case "step":
            guard parts.count >= 2, let size = Int(parts[1]), size > 0 else { throw fail("SIZE must be a positive number of epochs") }
            let gamma = try number(2, "GAMMA", default: 0.1)
            guard gamma > 0 else { throw fail("GAMMA must be > 0") }
            self = .step(size: size, gamma: gamma)
            arity = 3
        case "multistep":
            guard parts.count >= 2 else { throw fail("missing milestones") }
            let milestones = parts[1].split(separator: ",", omittingEmptySubsequences: false).map { Int($0) }
            guard !milestones.isEmpty, milestones.allSatisfy({ ($0 ?? -1) >= 0 }) else { throw fail("milestones must be epochs >= 0") }
            let m = milestones.map { $0! }
            guard m == m.sorted() else { throw fail("milestones must increase") }
            let gamma = try number(2, "GAMMA", default: 0.1)
            guard gamma > 0 else { throw fail("GAMMA must be > 0") }
            self = .multistep(milestones: m, gamma: gamma)
            arity = 3
        case "exponential":
            let gamma = try number(1, "GAMMA")
            guard gamma > 0 else { throw fail("GAMMA must be > 0") }
            self = .exponential(gamma: gamma)
            arity = 2
        case "cosine":
            let minLR = try number(1, "MIN_LR", default: 0)
            guard minLR >= 0 else { throw fail("MIN_LR must be >= 0") }
            self = .cosine(minLR: minLR)
            arity = 2
        case "onecycle":
            let pct = try number(1, "PCT_START", default: 0.3)
            guard pct > 0 && pct < 1 else { throw fail("PCT_START must be in (0, 1)") }
            self = .onecycle(pctStart: pct)
            arity = 2
        default:
            throw fail("unknown schedule '\(parts[0])'")
        }
        guard parts.count <= arity else { throw fail("too many fields") }
    }

    public var description: String {
        switch self {
        case .constant: return "constant"
        case .step(let size, let gamma): return "step:\(size):\(gamma)"
        case .multistep(let m, let gamma): return "multistep:\(m.map(String.init).joined(separator: ",")):\(gamma)"
        case .exponential(let gamma): return "exponential:\(gamma)"
        case .cosine(let minLR): return "cosine:\(minLR)"
        case .onecycle(let pct): return "onecycle:\(pct)"
        }
    }

    /// Whether the rate depends on the run's total number of steps (so changing --epochs or
    /// --max-steps changes the trajectory).
    public var dependsOnLength: Bool {
        switch self {
        case .cosine, .onecycle: return true
        default: return false
        }
    }

    /// The learning rate of 0-based optimizer step `step`, in 0-based epoch `epoch`, of a run of
    /// `totalSteps` steps, for base (or, for onecycle, maximum) rate `base`.
    public func rate(base: Float, step: Int, epoch: Int, totalSteps: Int, warmupSteps: Int = 0) -> Float {
        let lr = Double(base)
        var r: Double
        switch self {
        case .constant:
            r = lr
        case .step(let size, let gamma):
            r = lr * pow(gamma, Double(epoch / size))
        case .multistep(let milestones, let gamma):
            var passed = 0
            for m in milestones where m <= epoch { passed += 1 }
            r = lr * pow(gamma, Double(passed))
        case .exponential(let gamma):
            r = lr * pow(gamma, Double(epoch))
        case .cosine(let minLR):
            let t = Double(min(step, totalSteps)), T = Double(max(totalSteps, 1))
            r = minLR + (lr - minLR) * (1 + cos(Double.pi * t / T)) / 2
        case .onecycle(let pct):
            // torch: initial = max / 25, min = initial / 1e4; phase ends at pct * T - 1 and T - 1.
            let initial = lr / 25, final = initial / 1e4
            let end1 = pct * Double(totalSteps) - 1, end2 = Double(totalSteps) - 1
            let t = Double(min(step, totalSteps - 1))
            func anneal(_ start: Double, _ end: Double, _ p: Double) -> Double { end + (start - end) / 2 * (cos(Double.pi * p) + 1) }
            if t <= end1 {
                r = anneal(initial, lr, end1 > 0 ? t / end1 : 1)
            } else {
                r = anneal(lr, final, end2 > end1 ? (t - end1) / (end2 - end1) : 1)
            }
        }
        if warmupSteps > 0 && step < warmupSteps { r *= Double(step + 1) / Double(warmupSteps) }
        return Float(r)
    }
}
