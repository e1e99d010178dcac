fn main() {
    std::process::exit(otpgate::main());
}
