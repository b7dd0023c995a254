// AudioWorklet: microphone -> 16 kHz mono Int16 blocks posted to the page (with the block's RMS level).
// `sampleRate` is the context's rate; any rate is resampled to 16 kHz by linear interpolation (16 kHz: passthrough).

const OUT_RATE = 16000;

class VitaCapture extends AudioWorkletProcessor {
  constructor(options) {
    super();
    this.block = (options.processorOptions && options.processorOptions.block) || 640; // 40 ms at 16 kHz
    this.step = sampleRate / OUT_RATE; // input samples per output sample
    this.pos = 0; // fractional read position in the current input block (carried over blocks)
    this.prev = 0; // last input sample of the previous block (for interpolation across blocks)
    this.out = new Int16Array(this.block);
    this.n = 0;
    this.sq = 0;
  }

  push(x) {
    const s = Math.max(-1, Math.min(1, x));
    this.sq += s * s;
    this.out[this.n++] = s < 0 ? s * 0x8000 : s * 0x7fff;
    if (this.n === this.block) {
      const rms = Math.sqrt(this.sq / this.block);
      this.port.postMessage({ pcm: this.out.buffer, rms }, [this.out.buffer]);
      this.out = new Int16Array(this.block);
      this.n = 0;
      this.sq = 0;
    }
  }

  process(inputs) {
    const ch = inputs[0] && inputs[0][0];
    if (!ch) return true;
    if (this.step === 1) {
      for (let i = 0; i < ch.length; i++) this.push(ch[i]);
      return true;
    }
    // position p in [-1, len): sample p between ch[floor(p)] and ch[floor(p) + 1]; index -1 is `prev`
    let p = this.pos;
    while (p < ch.length - 1) {
      const i = Math.floor(p);
      const a = i < 0 ? this.prev : ch[i];
      const b = ch[i + 1];
      this.push(a + (b - a) * (p - i));
      p += this.step;
    }
    this.pos = p - ch.length;
    this.prev = ch[ch.length - 1];
    return true;
  }
}

registerProcessor("vita-capture", VitaCapture);
