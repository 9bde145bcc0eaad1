"""The embedded default: a synthetic multi-step arithmetic task, its char tokenizer and a tiny pretrained base.

`task` draws the problems (numpy only), `tokenizer` builds the offline char tokenizer, and
`pretrain` trains the base model shipped in loop/assets/embedded-base/. Nothing is imported here,
so `import loop.embedded.task` does not pull in torch.
"""
