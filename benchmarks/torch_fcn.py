"""The project's PyTorch FCN: the reference against which keras_fcn is checked and timed.

It follows the public port "pytorch-fcn" (``torchfcn.models`` FCN32s, FCN16s, FCN8s,
FCN8sAtOnce) layer for layer, written here: the same attribute names (so the same state dict
keys, which ``keras_fcn.weights.convert_torch_state_dict`` maps by name), conv1_1 padding 100,
ceil-mode max pooling, fc6 7x7, bias-free ConvTranspose2d, crops 19 / 5, 27 / 5, 9, 31, and
pool4 * 0.01, pool3 * 0.0001 in the at-once model. Only the channel widths are parameters, so
tests run in seconds.

Used by tests/test_torch_equivalence.py (converted weights reproduce its logits) and
benchmarks/gpu.py (the PyTorch figures and the on-device equivalence check).

Example:
    >>> model = randomize(TorchFCN("8s", 21, widths=(4, 6, 8, 10, 12), fc_units=16))
    >>> model(torch.zeros(1, 3, 37, 29)).shape
    torch.Size([1, 21, 37, 29])
"""

import torch
from torch import nn

CONVS_PER_BLOCK = (2, 2, 3, 3, 3)
VGG16_WIDTHS = (64, 128, 256, 512, 512)


class TorchFCN(nn.Module):
    """pytorch-fcn's FCN32s / FCN16s / FCN8s / FCN8sAtOnce with configurable widths.

    Args:
        variant: ``"32s"``, ``"16s"``, ``"8s"`` or ``"8s_at_once"``.
        n_class: number of classes.
        widths: channel widths of conv1 .. conv5.
        fc_units: channels of fc6 and fc7.
    """

    def __init__(self, variant, n_class, widths=VGG16_WIDTHS, fc_units=4096):
        super().__init__()
        self.variant = variant
        previous = 3
        for block, (width, count) in enumerate(zip(widths, CONVS_PER_BLOCK), start=1):
            for i in range(1, count + 1):
                padding = 100 if (block, i) == (1, 1) else 1
                setattr(self, f"conv{block}_{i}", nn.Conv2d(previous, width, 3, padding=padding))
                setattr(self, f"relu{block}_{i}", nn.ReLU(inplace=True))
                previous = width
            setattr(self, f"pool{block}", nn.MaxPool2d(2, stride=2, ceil_mode=True))
        self.fc6 = nn.Conv2d(widths[4], fc_units, 7)
        self.relu6 = nn.ReLU(inplace=True)
        self.drop6 = nn.Dropout2d()
        self.fc7 = nn.Conv2d(fc_units, fc_units, 1)
        self.relu7 = nn.ReLU(inplace=True)
        self.drop7 = nn.Dropout2d()
        self.score_fr = nn.Conv2d(fc_units, n_class, 1)
        if variant == "32s":
            self.upscore = nn.ConvTranspose2d(n_class, n_class, 64, stride=32, bias=False)
            return
        self.score_pool4 = nn.Conv2d(widths[3], n_class, 1)
        self.upscore2 = nn.ConvTranspose2d(n_class, n_class, 4, stride=2, bias=False)
        if variant == "16s":
            self.upscore16 = nn.ConvTranspose2d(n_class, n_class, 32, stride=16, bias=False)
            return
        self.score_pool3 = nn.Conv2d(widths[2], n_class, 1)
        self.upscore_pool4 = nn.ConvTranspose2d(n_class, n_class, 4, stride=2, bias=False)
        self.upscore8 = nn.ConvTranspose2d(n_class, n_class, 16, stride=8, bias=False)

    def _block(self, h, block):
        for i in range(1, CONVS_PER_BLOCK[block - 1] + 1):
            h = getattr(self, f"relu{block}_{i}")(getattr(self, f"conv{block}_{i}")(h))
        return getattr(self, f"pool{block}")(h)

    def forward(self, x):
        h = self._block(x, 1)
        h = self._block(h, 2)
        pool3 = h = self._block(h, 3)  # 1/8
        pool4 = h = self._block(h, 4)  # 1/16
        h = self._block(h, 5)  # 1/32
        h = self.drop6(self.relu6(self.fc6(h)))
        h = self.drop7(self.relu7(self.fc7(h)))
        h = self.score_fr(h)
        if self.variant == "32s":
            h = self.upscore(h)
            return h[:, :, 19:19 + x.size()[2], 19:19 + x.size()[3]].contiguous()

        at_once = self.variant == "8s_at_once"
        upscore2 = self.upscore2(h)  # 1/16
        h = self.score_pool4(pool4 * 0.01 if at_once else pool4)
        h = h[:, :, 5:5 + upscore2.size()[2], 5:5 + upscore2.size()[3]]
        h = upscore2 + h
        if self.variant == "16s":
            h = self.upscore16(h)
            return h[:, :, 27:27 + x.size()[2], 27:27 + x.size()[3]].contiguous()

        upscore_pool4 = self.upscore_pool4(h)  # 1/8
        h = self.score_pool3(pool3 * 0.0001 if at_once else pool3)
        h = h[:, :, 9:9 + upscore_pool4.size()[2], 9:9 + upscore_pool4.size()[3]]
        h = upscore_pool4 + h
        h = self.upscore8(h)
        return h[:, :, 31:31 + x.size()[2], 31:31 + x.size()[3]].contiguous()


def randomize(model, seed=0):
    """He-scaled random weights and biases everywhere (score layers and transposed-conv kernels
    too, so that every layer shows in the logits); skip score layers of the at-once model are
    scaled up by 1/0.01 and 1/0.0001 so that their contribution is visible. Returns the model
    in eval mode; the same ``seed`` gives the same weights on every machine (CPU generator).
    """
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, module in model.named_children():
            if not isinstance(module, (nn.Conv2d, nn.ConvTranspose2d)):
                continue
            weight = module.weight
            fan_in = weight[0].numel() if isinstance(module, nn.Conv2d) else weight.shape[0]
            scale = (2.0 / fan_in) ** 0.5
            if model.variant == "8s_at_once":
                scale *= {"score_pool4": 100.0, "score_pool3": 10000.0}.get(name, 1.0)
            weight.copy_(torch.randn(weight.shape, generator=generator) * scale)
            if module.bias is not None:
                module.bias.copy_(torch.randn(module.bias.shape, generator=generator) * 0.1)
    return model.eval()
