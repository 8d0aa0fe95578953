import Data
import Foundation

/// `ddp-train report`: one self-contained HTML file, with the charts drawn as inline SVG and the
/// sample images embedded as PNG data URIs, so it opens anywhere with nothing beside it.
public struct Report {
    /// One step line of the metrics file.
    public struct Step { public var step: Int; public var epoch: Int; public var loss: Double; public var lr: Double }
    /// One evaluation line: step, epoch and its `val_*` fields.
    public struct Evaluation { public var step: Int; public var epoch: Int; public var fields: [String: Double] }
    /// A sample of the evaluation set with the model's class probabilities.
    public struct Sample {
        public var image: DecodedImage?
        public var truth: Int
        public var probabilities: [Double]
        public init(image: DecodedImage?, truth: Int, probabilities: [Double]) {
            self.image = image
            self.truth = truth
            self.probabilities = probabilities
        }
    }

    public var title: String
    public var steps: [Step] = []
    public var evaluations: [Evaluation] = []
    public var result: EvalResult?
    public var classNames: [String] = []
    public var samples: [Sample] = []
    public var configuration: [(String, String)] = []

    public init(title: String) { self.title = title }

    /// Reads a `--metrics` file; a line that is not a JSON object is skipped (a torn last line).
    public mutating func read(metrics path: String) throws {
        guard let text = try? String(contentsOfFile: path, encoding: .utf8) else { throw DataError("\(path): cannot read the metrics file") }
        for line in text.split(separator: "\n") {
            guard let o = try? JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any],
                  let step = o["step"] as? Int, let epoch = o["epoch"] as? Int else { continue }
            if let loss = o["loss"] as? Double {
                steps.append(Step(step: step, epoch: epoch, loss: loss, lr: o["lr"] as? Double ?? .nan))
            } else {
                var fields: [String: Double] = [:]
                for (k, v) in o where k.hasPrefix("val_") { if let d = v as? Double { fields[k] = d } }
                evaluations.append(Evaluation(step: step, epoch: epoch, fields: fields))
            }
        }
        guard !steps.isEmpty || !evaluations.isEmpty else { throw DataError("\(path): no step or evaluation lines (is it a --metrics file?)") }
    }

    // MARK: - The page

    public func html() -> String {
        var body = "<h1>\(escape(title))</h1>\n"
        if !steps.isEmpty {
            var means: [(Double, Double)] = []
            for epoch in Set(steps.map(\.epoch)).sorted() {
                let s = steps.filter { $0.epoch == epoch }
                means.append((Double(s.last!.step), s.map(\.loss).reduce(0, +) / Double(s.count)))
            }
            body += section("Training loss", Chart(xLabel: "step", series: [
                .init(name: "loss per step", color: "#9ab", points: steps.map { (Double($0.step), $0.loss) }),
                .init(name: "epoch mean", color: "#c33", points: means, dots: true),
            ]).svg())
            body += section("Learning rate", Chart(xLabel: "step", series: [
                .init(name: "lr", color: "#383", points: steps.map { (Double($0.step), $0.lr) }),
            ]).svg())
        }
        if !evaluations.isEmpty {
            let names = Set(evaluations.flatMap(\.fields.keys)).sorted()
            let palette = ["#c33", "#36c", "#383", "#a5c", "#c80"]
            var charts = ""
            for (i, name) in names.enumerated() {
                charts += Chart(xLabel: "step", series: [.init(name: name, color: palette[i % palette.count],
                                                              points: evaluations.compactMap { e in e.fields[name].map { (Double(e.step), $0) } },
                                                              dots: true)]).svg(width: 420, height: 240)
            }
            body += section("Validation", charts)
        }
        if let result {
            switch result.metrics {
            case .classification(let confusion):
                body += section("Confusion matrix", heatMap(confusion) + "<p>\(escape(result.line(setName: "evaluation")))</p>")
                body += section("Per class", perClass(confusion))
            case .regression(let r):
                body += section("Regression", "<p>\(escape(result.line(setName: "evaluation")))</p><pre>\(escape(r.render()))</pre>")
            }
        }
        if !samples.isEmpty { body += section("Samples and predicted probabilities", sampleGrid()) }
        if !configuration.isEmpty {
            body += section("Configuration", "<table class=\"config\">" + configuration.map {
                "<tr><th>\(escape($0.0))</th><td>\(escape($0.1))</td></tr>"
            }.joined() + "</table>")
        }
        return """
            <!DOCTYPE html>
            <html><head><meta charset="utf-8"><title>\(escape(title))</title>
            <style>
            body { font-family: sans-serif; margin: 24px; color: #222; }
            section { margin-bottom: 28px; } h2 { font-size: 18px; border-bottom: 1px solid #ccc; }
            svg text { font-size: 11px; fill: #333; } table { border-collapse: collapse; }
            td, th { border: 1px solid #ddd; padding: 3px 8px; text-align: right; } th { background: #f4f4f4; }
            table.config td, table.config th { text-align: left; }
            .samples { display: flex; flex-wrap: wrap; gap: 12px; } .sample { border: 1px solid #ddd; padding: 6px; }
            .sample img { width: 84px; height: 84px; image-rendering: pixelated; display: block; }
            </style></head><body>
            \(body)</body></html>

            """
    }

    func section(_ heading: String, _ content: String) -> String {
        "<section><h2>\(escape(heading))</h2>\n\(content)\n</section>\n"
    }

    /// Rows true class, columns predicted; each cell shaded by its share of the row.
    func heatMap(_ c: ConfusionMatrix) -> String {
        let cell = 34, left = 110, top = 40, n = c.classes
        var svg = "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"\(left + n * cell + 10)\" height=\"\(top + n * cell + 10)\">"
        svg += "<text x=\"\(left)\" y=\"14\">predicted</text>"
        for p in 0..<n { svg += "<text x=\"\(left + p * cell + cell / 2)\" y=\"\(top - 6)\" text-anchor=\"middle\">\(p)</text>" }
        for t in 0..<n {
            let total = max(1, (0..<n).reduce(0) { $0 + c[t, $1] })
            svg += "<text x=\"\(left - 6)\" y=\"\(top + t * cell + cell / 2 + 4)\" text-anchor=\"end\">\(escape(name(t)))</text>"
            for p in 0..<n {
                let share = Double(c[t, p]) / Double(total)
                let shade = Int(255 - 200 * share)
                svg += "<rect x=\"\(left + p * cell)\" y=\"\(top + t * cell)\" width=\"\(cell)\" height=\"\(cell)\" "
                    + "fill=\"rgb(\(shade),\(shade),255)\" stroke=\"#fff\"/>"
                if c[t, p] > 0 {
                    svg += "<text x=\"\(left + p * cell + cell / 2)\" y=\"\(top + t * cell + cell / 2 + 4)\" text-anchor=\"middle\""
                        + (share > 0.5 ? " style=\"fill:#fff\"" : "") + ">\(c[t, p])</text>"
                }
            }
        }
        return svg + "</svg>"
    }

    /// Precision, recall and F1 per class, as sklearn's classification_report.
    func perClass(_ c: ConfusionMatrix) -> String {
        var rows = "<table><tr><th>class</th><th>precision</th><th>recall</th><th>F1</th><th>support</th></tr>"
        for k in 0..<c.classes {
            let tp = Double(c[k, k])
            let predicted = Double((0..<c.classes).reduce(0) { $0 + c[$1, k] })
            let support = Double((0..<c.classes).reduce(0) { $0 + c[k, $1] })
            let precision = predicted > 0 ? tp / predicted : 0, recall = support > 0 ? tp / support : 0
            let f1 = precision + recall > 0 ? 2 * precision * recall / (precision + recall) : 0
            rows += String(format: "<tr><th>%@</th><td>%.3f</td><td>%.3f</td><td>%.3f</td><td>%d</td></tr>",
                           escape(name(k)), precision, recall, f1, Int(support))
        }
        return rows + "</table>"
    }

    /// Each sample's image beside a bar per class: the true class green, a wrong prediction red.
    func sampleGrid() -> String {
        var html = "<div class=\"samples\">"
        for s in samples {
            let predicted = s.probabilities.indices.max { s.probabilities[$0] < s.probabilities[$1] } ?? 0
            html += "<div class=\"sample\">"
            if let image = s.image, let png = try? ImageFile.encodePNG(image) {
                html += "<img alt=\"sample\" src=\"data:image/png;base64,\(Data(png).base64EncodedString())\">"
            }
            let barHeight = 11, width = 150
            var svg = "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"\(width + 60)\" height=\"\(s.probabilities.count * barHeight + 4)\">"
            for (k, p) in s.probabilities.enumerated() {
                let color = k == s.truth ? "#3a3" : (k == predicted ? "#c33" : "#999")
                svg += "<text x=\"0\" y=\"\(k * barHeight + 9)\">\(escape(String(name(k).prefix(8))))</text>"
                svg += "<rect x=\"55\" y=\"\(k * barHeight + 1)\" width=\"\(max(1, Int(p * Double(width))))\" height=\"\(barHeight - 2)\" fill=\"\(color)\"/>"
            }
            html += svg + "</svg><div>true \(escape(name(s.truth))), predicted \(escape(name(predicted)))</div></div>"
        }
        return html + "</div>"
    }

    func name(_ k: Int) -> String { k < classNames.count ? classNames[k] : String(k) }
}

/// A line chart in SVG: linear axes from the data's range, five ticks each, a legend.
struct Chart {
    struct Series {
        var name: String
        var color: String
        var points: [(Double, Double)]
        var dots = false
    }

    var xLabel: String
    var series: [Series]

    func svg(width: Int = 860, height: Int = 280) -> String {
        let all = series.flatMap(\.points).filter { $0.0.isFinite && $0.1.isFinite }
        guard !all.isEmpty else { return "<p>no data</p>" }
        let (left, right, top, bottom) = (60.0, 16.0, 22.0, 34.0)
        var x0 = all.map(\.0).min()!, x1 = all.map(\.0).max()!, y0 = all.map(\.1).min()!, y1 = all.map(\.1).max()!
        if x1 == x0 { x0 -= 1; x1 += 1 }
        if y1 == y0 { y0 -= abs(y0) * 0.1 + 1e-9; y1 += abs(y1) * 0.1 + 1e-9 }
        let w = Double(width) - left - right, h = Double(height) - top - bottom
        func px(_ x: Double) -> Double { left + (x - x0) / (x1 - x0) * w }
        func py(_ y: Double) -> Double { top + (1 - (y - y0) / (y1 - y0)) * h }
        var svg = "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"\(width)\" height=\"\(height)\">"
        svg += String(format: "<rect x=\"%.1f\" y=\"%.1f\" width=\"%.1f\" height=\"%.1f\" fill=\"#fcfcfc\" stroke=\"#bbb\"/>", left, top, w, h)
        for i in 0...4 {
            let fx = x0 + (x1 - x0) * Double(i) / 4, fy = y0 + (y1 - y0) * Double(i) / 4
            svg += String(format: "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"middle\">%@</text>", px(fx), top + h + 14, Chart.label(fx))
            svg += String(format: "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"end\">%@</text>", left - 4, py(fy) + 4, Chart.label(fy))
            svg += String(format: "<line x1=\"%.1f\" x2=\"%.1f\" y1=\"%.1f\" y2=\"%.1f\" stroke=\"#eee\"/>", left, left + w, py(fy), py(fy))
        }
        svg += String(format: "<text x=\"%.1f\" y=\"%d\" text-anchor=\"middle\">%@</text>", left + w / 2, height - 4, xLabel)
        for (i, s) in series.enumerated() {
            let points = s.points.filter { $0.0.isFinite && $0.1.isFinite }
            svg += "<polyline fill=\"none\" stroke=\"\(s.color)\" stroke-width=\"1.5\" points=\""
                + points.map { String(format: "%.1f,%.1f", px($0.0), py($0.1)) }.joined(separator: " ") + "\"/>"
            if s.dots {
                for p in points { svg += String(format: "<circle cx=\"%.1f\" cy=\"%.1f\" r=\"3\" fill=\"%@\"/>", px(p.0), py(p.1), s.color) }
            }
            svg += String(format: "<rect x=\"%.1f\" y=\"6\" width=\"10\" height=\"10\" fill=\"%@\"/><text x=\"%.1f\" y=\"15\">%@</text>",
                          left + Double(i) * 160, s.color, left + Double(i) * 160 + 14, escape(s.name))
        }
        return svg + "</svg>"
    }

    static func label(_ v: Double) -> String {
        let a = abs(v)
        return a != 0 && (a < 1e-3 || a >= 1e5) ? String(format: "%.2e", v) : String(format: "%.4g", v)
    }
}

func escape(_ s: String) -> String {
    s.replacingOccurrences(of: "&", with: "&amp;").replacingOccurrences(of: "<", with: "&lt;")
        .replacingOccurrences(of: ">", with: "&gt;").replacingOccurrences(of: "\"", with: "&quot;")
}
