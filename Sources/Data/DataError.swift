/// A problem with input data or weight files. The description is the one line the user sees.
public struct DataError: Error, CustomStringConvertible, Equatable {
    public let description: String
    public init(_ description: String) { self.description = description }
}
